"""pyproject.toml, constraints.txt and environment.yml describe the same environment."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_req(req: str):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:==\s*([^\s;]+))?", req)
    return norm(m.group(1)), m.group(2)


def pyproject_names() -> set[str]:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(proj["dependencies"])
    for extra in ("course", "test", "reference"):
        reqs += proj["optional-dependencies"][extra]
    return {split_req(r)[0] for r in reqs}


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = split_req(line)
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[name] = version
    return pins


def environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(split_req(r) for r in pip if not r.startswith("-"))


def test_torch_is_pinned_everywhere():
    assert constraints()["torch"] == "2.13.0"
    assert environment_pins()["torch"] == "2.13.0"



def test_the_package_states_a_torch_range_that_holds_the_pin():
    """An engineer's own torch is kept: pyproject states a range, not the course's exact pin."""
    from packaging.requirements import Requirement

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(Requirement(r) for r in proj["dependencies"] if split_req(r)[0] == "torch")
    assert not any(s.operator == "==" for s in torch_req.specifier), torch_req
    assert {s.operator for s in torch_req.specifier} >= {">=", "<"}, torch_req
    assert torch_req.specifier.contains(constraints()["torch"]), torch_req
    assert not torch_req.specifier.contains("2.4.1") and not torch_req.specifier.contains("3.0")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    env = environment_pins()
    assert set(env) == pyproject_names(), (
        f"only in environment.yml: {sorted(set(env) - pyproject_names())}; "
        f"only in pyproject.toml: {sorted(pyproject_names() - set(env))}")


def test_environment_yml_versions_equal_the_constraints():
    pins = constraints()
    for name, version in environment_pins().items():
        assert name in pins, f"{name} is in environment.yml but not pinned in constraints.txt"
        assert version == pins[name], f"{name}: environment.yml has {version}, constraints.txt {pins[name]}"


def test_every_pyproject_package_is_pinned():
    pins = constraints()
    missing = sorted(n for n in pyproject_names() if n not in pins)
    assert not missing, f"not pinned in constraints.txt: {missing}"


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version

    pins = constraints()
    for name in pyproject_names():
        assert version(name).split("+")[0] == pins[name], name


def test_the_reference_packages_file_lists_the_reference_extra():
    """make setup installs tests/reference-packages.txt with --no-deps: the same names as the extra,
    each pinned in constraints.txt."""
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {split_req(r)[0] for r in proj["optional-dependencies"]["reference"]}
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "tests" / "reference-packages.txt").read_text().splitlines()]
    listed = {norm(ln) for ln in lines if ln}
    assert listed == extra and "peft" in listed and "transformers" in listed
    assert listed <= set(constraints()), sorted(listed - set(constraints()))
    assert "--no-deps -c constraints.txt -r tests/reference-packages.txt" in (ROOT / "Makefile").read_text()

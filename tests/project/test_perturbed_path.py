"""The Chinese notebooks run under a perturbed arithmetic path (root conftest.py).

nbval compares them strictly against outputs the build wrote on the default path, so a stored
digit that depends on the CPU's arithmetic fails in `make test` on the machine that runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def root_conftest(request):
    """The root conftest.py, as pytest loaded it (the module that patched nbval)."""
    for plugin in request.config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", None) or "/").resolve() == ROOT / "conftest.py":
            return plugin
    raise LookupError("the root conftest.py is not loaded")

PROBE = r"""
import torch
torch.manual_seed(0)
a, b = torch.randn(257, 509), torch.randn(509, 131)
x = torch.randn(64, 1000) * 3
out = torch.cat([(a @ b).flatten(), x.softmax(-1).flatten(), x.exp().sum(-1), torch.randn(100003).cumsum(0)[-5:]])
print(out.numpy().tobytes().hex())
"""


def _probe(env_overrides: dict[str, str], drop) -> str:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("lang, perturbed", [("zh", True), ("en", False)])
def test_the_kernel_of_a_chinese_notebook_starts_under_the_perturbed_path(lang, perturbed, monkeypatch,
                                                                          root_conftest):
    seen = {}

    def start_kernel(self):  # stands in for nbval's setup, which starts the kernel process
        code = "import os, json; print(json.dumps({k: os.environ.get(k) for k in %r}))" % list(
            root_conftest.PERTURBED_PATH)
        seen.update(eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout.replace("null", "None")))

    monkeypatch.delenv("ATTNKIT_PERTURB", raising=False)
    for k in root_conftest.PERTURBED_PATH:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(root_conftest, "_nbval_setup", start_kernel)
    fake = SimpleNamespace(fspath=ROOT / "chapters" / lang / "09_linear_attention.ipynb")
    root_conftest._setup_maybe_perturbed(fake)
    want = root_conftest.PERTURBED_PATH if perturbed else {k: None for k in root_conftest.PERTURBED_PATH}
    assert seen == want
    assert all(k not in os.environ for k in root_conftest.PERTURBED_PATH)  # restored afterwards


def test_attnkit_perturb_chooses_another_setting_or_none(monkeypatch, root_conftest):
    monkeypatch.setenv("ATTNKIT_PERTURB", "OMP_NUM_THREADS=4 MKL_CBWR=AVX2")
    assert root_conftest.perturbed_settings() == {"OMP_NUM_THREADS": "4", "MKL_CBWR": "AVX2"}
    monkeypatch.setenv("ATTNKIT_PERTURB", "")
    assert root_conftest.perturbed_settings() == {}


def test_the_perturbed_path_really_changes_float_results(root_conftest):
    """On CI (x86 with AVX2 or AVX-512 and MKL) the perturbed path must change float results, or the
    Chinese pass proves nothing; on a reader's machine where it happens to coincide with the
    default path (no MKL, no vector units) it says so instead of failing their `make test`."""
    path = root_conftest.PERTURBED_PATH
    same = _probe({}, path) == _probe(path, path)
    if os.environ.get("CI") == "true":
        assert not same, f"{root_conftest.PERTURBED_PATH} no longer changes float results here"
    elif same:
        warnings.warn(f"{root_conftest.PERTURBED_PATH} gives this machine's default arithmetic: "
                      "the Chinese notebooks' pass is not perturbed here", stacklevel=1)

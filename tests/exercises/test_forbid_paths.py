"""Every exercise's ``forbid=`` names resolve, and an attnkit name is the function's defining
module: the checker watches the code of what a name resolves to, so a name that resolves to nothing
forbids nothing, silently."""

import importlib

import pytest

from attnkit import exercises as X

REGISTRY = X.registry()


def resolve(dotted: str):
    """The object a dotted name names (the longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def forbidden_names():
    names = {(ex_id, name) for ex_id, ex in REGISTRY.items() for name in ex.forbid}
    names |= {("FAMILIES", name) for family in X.FAMILIES.values() for name in family.get("python", ())}
    return sorted(names)


def test_the_registry_has_forbidden_names():
    assert len({name for _, name in forbidden_names()}) >= 40


@pytest.mark.parametrize("where,name", forbidden_names())
def test_forbid_names_resolve_to_the_defining_module(where, name):
    obj = resolve(name)  # AttributeError / ImportError: a name that forbids nothing
    assert callable(obj), f"{where}: {name} is not callable"
    if name.startswith("attnkit."):
        defined = f"{obj.__module__}.{obj.__qualname__}"
        assert defined == name, f"{where}: forbid names {name}, defined as {defined}"

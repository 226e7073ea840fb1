"""Plain helpers the exercise tests share (imported as `from helpers import ...`)."""

import attnkit.exercises as X


def run(check, fn, capsys):
    """Run a checker on `fn`; return (passed, what it printed)."""
    ok = check(fn)
    return ok, capsys.readouterr().out


def todo(*_args):
    """An untouched stub."""
    raise NotImplementedError


def without_forbid(monkeypatch):
    """Checkers forbid attnkit's own function; lift the trap to test that it agrees."""
    monkeypatch.setattr(X, "_call_forbidding", lambda fn, forbid, args, kwargs: fn(*args, **kwargs))

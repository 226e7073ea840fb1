"""The exercise tests check each checker against its own reference solution: that is allowed here,
except in test modules that set ``REFUSE_SOLUTIONS = True`` (the machinery and the bypass corpus,
which test that a learner handing in a solution is told so)."""

import pytest


@pytest.fixture(autouse=True)
def _solutions_allowed(request):
    from attnkit import exercises

    exercises._ALLOW_SOLUTIONS["on"] = not getattr(request.module, "REFUSE_SOLUTIONS", False)
    yield
    exercises._ALLOW_SOLUTIONS["on"] = False

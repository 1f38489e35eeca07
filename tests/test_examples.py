"""Every public function and the Session class carry a runnable example, and it runs."""

from __future__ import annotations

import doctest
import inspect

import pytest

import medrefine as mr
from medrefine.kernels import geodesic_distance, region_grow
from medrefine.models import model_card

PUBLIC = [
    getattr(mr, name)
    for name in mr.__all__
    if inspect.isfunction(getattr(mr, name)) or getattr(mr, name) is mr.Session
] + [region_grow, geodesic_distance, model_card]  # public in their subpackages


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_public_callable_has_an_example_that_runs(obj: object) -> None:
    tests = doctest.DocTestFinder(recurse=False).find(obj, globs={"np": __import__("numpy")})
    examples = [t for t in tests if t.examples]
    assert examples, f"{obj.__name__}'s docstring has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in examples:
        test.globs.update(vars(inspect.getmodule(obj)))
        runner.run(test)
    assert runner.failures == 0, f"{obj.__name__}'s example failed (see the output above)"


def test_the_check_sees_a_missing_example() -> None:
    def undocumented() -> None:
        """No example here."""

    assert not [t for t in doctest.DocTestFinder().find(undocumented) if t.examples]

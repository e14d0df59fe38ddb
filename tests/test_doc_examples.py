"""The Examples sections of the public docstrings run, as doctests."""

import doctest
import warnings

import pytest

import skdlc

DOCUMENTED = ["prune", "SelectionSampler", "FlexRandSampler", "tune_gamma", "select_from_scores"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_examples_run(name):
    obj = getattr(skdlc, name)
    finder = doctest.DocTestFinder(recurse=False)
    tests = [t for t in finder.find(obj, name, globs={}) if t.examples]
    assert tests, f"skdlc.{name} has no example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in tests:
            runner.run(t)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in skdlc.{name}"

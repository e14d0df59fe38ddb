"""SelectionSampler against the sklearn and imbalanced-learn conformance suites."""

import warnings

import pytest
from imblearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_param_validation,
    estimator_checks_generator,
)
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdlc import SelectionSampler

IMBLEARN_XFAIL: dict = {}
# As for FlexRandSampler: the check's synthetic X has more than one but fewer columns than
# y has classes, which is no score layout and raises a clear ValueError; the same
# properties are tested on valid layouts in test_selection_tuning.py.
LAYOUT = "the check's X has fewer columns than y has classes: no score layout"
SKLEARN_XFAIL = {name: LAYOUT for name in (
    "check_estimators_overwrite_params", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_estimator_sparse_array", "check_estimator_sparse_matrix")}


def _check_id(value):
    if isinstance(value, SelectionSampler):
        return "SelectionSampler"
    func = getattr(value, "func", value)
    return getattr(func, "__name__", None)


@pytest.mark.parametrize(
    "estimator, check",
    list(estimator_checks_generator(SelectionSampler(random_state=0, cv=2),
                                    expected_failed_checks=IMBLEARN_XFAIL, mark="xfail")),
    ids=_check_id,
)
def test_imblearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@parametrize_with_checks([SelectionSampler(random_state=0, cv=2)],
                         expected_failed_checks=lambda e: SKLEARN_XFAIL)
def test_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def test_param_validation_and_column_names():
    check_param_validation("SelectionSampler", SelectionSampler(random_state=0))
    check_dataframe_column_names_consistency("SelectionSampler", SelectionSampler(random_state=0))

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solvers.answers import extract_answer, is_correct, parse_gold, parse_number, to_number
from solvers.outcome import Status


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She has 3 + 4 = 7 apples. The answer is 7.", 7),
        ("The answer is $1,234.50.", 1234.5),
        ("Total: 48/2 = 24\n#### 24", 24),
        (r"So the result is \boxed{\frac{3}{4}}", 0.75),
        (r"\boxed{12} and later 5", 12),
        ("The answer is −3 degrees", -3),
        ("The answer is 3/4.", 0.75),
        ("we get 10 - 3", 3),  # a spaced minus is an operator, not a sign
        ("The answer is 12 apples. Check: 12 - 5 = 7", 12),
        ("The answer is 5. Wait, the answer is 6.", 6),  # the last marker wins
        ("no marker, 2 then 3 then 41", 41),
        ("It costs .5 dollars", 0.5),
    ],
)
def test_extract_answer(text: str, expected: float) -> None:
    out = extract_answer(text)
    assert out.status is Status.OK and out.prediction == expected


def test_extract_failures() -> None:
    assert extract_answer("").status is Status.NO_ANSWER
    assert extract_answer("I do not know").status is Status.NO_ANSWER
    assert extract_answer("The answer is unknown.").status is Status.NON_NUMERIC


def test_percent_keeps_both_readings() -> None:
    out = extract_answer("The answer is 25%.")
    assert out.prediction == 25 and out.detail == "percent"
    assert is_correct(out.prediction, 0.25, percent=True)
    assert is_correct(out.prediction, 25, percent=True)
    assert not is_correct(out.prediction, 0.25)


@pytest.mark.parametrize(
    "raw, gold",
    [("Steps...\n#### 1,234", 1234), ("9 (apples)", 9), ("-7", -7), (3.0, 3), ("12.50", 12.5), ("0.5 (kg)", 0.5)],
)
def test_parse_gold(raw: object, gold: float) -> None:
    assert parse_gold(raw) == gold


@pytest.mark.parametrize("raw", ["2:3", "5 (apples), 6 (pears)", "ten", "", None, float("nan"), True])
def test_parse_gold_rejects_non_numbers(raw: object) -> None:
    assert parse_gold(raw) is None


def test_comparison_rule() -> None:
    assert is_correct(10 / 3 * 3, 10)  # float noise on an integer gold
    assert not is_correct(10.01, 10)  # integers compare exactly
    assert is_correct(33.33, 100 / 3)  # 1e-3 relative on non-integers
    assert not is_correct(33.0, 100 / 3)
    assert not is_correct(None, 3) and not is_correct(3, None)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_round_trip_through_text(n: int) -> None:
    for text in (f"The answer is {n:,}.", f"#### {n}", f"The answer is ${n:,}", f"answer: {n} apples"):
        out = extract_answer(text)
        assert out.prediction == n, text
    assert parse_gold(f"#### {n:,}") == n


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).filter(lambda x: abs(x) > 1e-6))
def test_floats_round_trip_and_match_within_tolerance(x: float) -> None:
    text = f"The answer is {x:.6f}"
    pred = extract_answer(text).prediction
    assert pred is not None and is_correct(pred, round(x, 6))
    assert is_correct(x * (1 + 5e-4), x) or isinstance(to_number(x), int)
    assert not is_correct(x * 1.01, x)


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.fractions()))
def test_to_number_is_int_when_integral_and_never_nonfinite(v: object) -> None:
    n = to_number(v)
    if n is None:
        assert isinstance(v, float) and not math.isfinite(v)
    elif isinstance(n, float):
        assert math.isfinite(n) and (not n.is_integer() or abs(n) >= 2**53)


@given(st.text())
def test_extraction_never_crashes(text: str) -> None:
    extract_answer(text)
    parse_number(text)
    parse_gold(text)

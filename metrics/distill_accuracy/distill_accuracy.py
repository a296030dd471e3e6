"""`distill` answer accuracy as an `evaluate` metric: `evaluate.load("metrics/distill_accuracy")`.

Predictions are final answers or chain-of-thought text (the answer after the last `The answer is`
or `####`, else the last number); references are gold answers (`72`, `#### 1,234`, `9 (apples)`).
The comparison is the project's (solvers.answers.outcome_correct): integers exactly, otherwise a
relative tolerance of 1e-3; an answer written `N%` also counts as N/100. Loads offline.
"""
import datasets
import evaluate

from solvers.answers import extract_answer, outcome_correct, parse_gold

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): final answers or rationales.
    references (list of str): gold answers.
Returns:
    accuracy (float): share of predictions whose answer matches the gold.
    answered (float): share of predictions in which an answer was found.
    scored (int): items with a gold answer that is one number (others are left out).
Examples:
    >>> metric = evaluate.load("metrics/distill_accuracy")
    >>> metric.compute(predictions=["The answer is 4.", "3.14159"], references=["#### 4", "3.1416"])
    {'accuracy': 1.0, 'answered': 1.0, 'scored': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DistillAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float | int]:
        pairs = [(extract_answer(str(p)), parse_gold(r)) for p, r in zip(predictions, references)]
        pairs = [(outcome, gold) for outcome, gold in pairs if gold is not None]
        correct = sum(bool(outcome_correct(o, g)) for o, g in pairs)
        answered = sum(o.is_ok for o, _ in pairs)
        n = len(pairs)
        return {"accuracy": correct / n if n else 0.0, "answered": answered / n if n else 0.0, "scored": n}

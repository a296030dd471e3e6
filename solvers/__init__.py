"""Checkers for model-written math rationales: answers, Python programs, equation systems.

Usable on its own: nothing here imports `distill`.
"""
from solvers.outcome import Outcome, Status

__all__ = ["Outcome", "Status"]

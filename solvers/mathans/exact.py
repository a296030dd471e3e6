"""A PoT program's exact answer (the `srepr` that solvers.sandbox.exact checked) as LaTeX, for the
checker. The text is rebuilt into a SymPy object by walking its syntax tree and calling only the
constructors of the sandbox's vocabulary, under `evaluate(False)` so that nothing is computed on the
way (`Pow(Integer(10), Integer(10**9))` stays a power); nothing is `eval`ed. SymPy's printer then
writes the LaTeX the checker reads."""
from __future__ import annotations

import ast
from typing import Any

from solvers.sandbox.exact import SYMPY_NAMES, canonical_srepr


class _Bad(ValueError):
    pass


def _build(node: ast.AST, sympy: Any) -> Any:
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)  # canonical_srepr admits only named constructors
        if node.func.id not in SYMPY_NAMES:
            raise _Bad(node.func.id)
        args = [_build(a, sympy) for a in node.args]
        kwargs = {k.arg: _build(k.value, sympy) for k in node.keywords if k.arg}
        return getattr(sympy, node.func.id)(*args, **kwargs)
    if isinstance(node, ast.Name):
        if node.id not in SYMPY_NAMES:
            raise _Bad(node.id)
        return getattr(sympy, node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.List):
        return [_build(e, sympy) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, sympy) for e in node.elts)
    raise _Bad(type(node).__name__)


def from_srepr(text: object) -> Any | None:
    """The SymPy object a checked srepr describes (unevaluated), or None when it is not one."""
    checked = canonical_srepr(text)
    if checked is None:
        return None
    import sympy
    from sympy.core.parameters import evaluate

    try:
        with evaluate(False):
            return _build(ast.parse(checked, mode="eval").body, sympy)
    except Exception:  # a constructor that refuses its arguments: no exact answer
        return None


def exact_latex(text: object) -> str | None:
    """The LaTeX of a checked srepr (`Rational(1, 3)` -> `\\frac{1}{3}`), or None."""
    obj = from_srepr(text)
    if obj is None:
        return None
    import sympy

    try:
        return sympy.latex(obj)
    except Exception:  # the printer fails on some unevaluated forms
        return None

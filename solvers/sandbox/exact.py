"""Exact (SymPy) answers as they leave the sandbox: a `srepr` string whose grammar we check here.

A program's child writes `sympy.srepr(ans)`; that text is untrusted. `canonical_srepr` parses it
with `ast` (no evaluation), accepts only calls of the SymPy constructors below with literal
arguments, and returns it re-printed by `ast.unparse`, so that what callers get is a bounded,
well-formed expression in a fixed vocabulary. Rebuilding the SymPy object from it is the caller's
step: `eval(text, {name: getattr(sympy, name) for name in SYMPY_NAMES})` runs only constructors,
but SymPy evaluates as it constructs (`Pow(Integer(10), Integer(10**9))`), so do it under a limit
(for instance as a job of the sandbox) or with `evaluate=False`.
"""
from __future__ import annotations

import ast

MAX_CHARS = 4000
_MAX_DEPTH = 64
# Constructors srepr writes for numbers, arithmetic, common functions, matrices, sets and relations.
_CALLS = frozenset({
    "Integer", "Rational", "Float", "Symbol", "Dummy", "Add", "Mul", "Pow", "Abs", "sign", "floor", "ceiling",
    "exp", "log", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "sinh", "cosh",
    "tanh", "factorial", "binomial", "gamma", "Min", "Max", "re", "im", "conjugate", "arg",
    "ImmutableDenseMatrix", "MutableDenseMatrix", "ImmutableSparseMatrix", "MutableSparseMatrix",
    "Interval", "FiniteSet", "Union", "Intersection", "Complement", "ProductSet", "Tuple", "Range",
    "Equality", "Unequality", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan",
    "And", "Or", "Not", "Piecewise", "CRootOf", "PurePoly",
})
# Singletons srepr writes as bare names.
_NAMES = frozenset({"pi", "E", "I", "oo", "zoo", "nan", "true", "false", "EmptySet", "Reals", "Integers",
                    "Naturals", "Naturals0", "Rationals", "Complexes", "EulerGamma", "GoldenRatio", "Catalan"})
SYMPY_NAMES = _CALLS | _NAMES  # every one an attribute of the sympy module


def _ok(node: ast.AST, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id in _CALLS
                and all(_ok(a, depth + 1) for a in node.args)
                and all(k.arg is not None and k.arg.isidentifier() and _ok(k.value, depth + 1) for k in node.keywords))
    if isinstance(node, ast.Name):
        return node.id in _NAMES
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, str, bool, float) or node.value is None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(_ok(e, depth + 1) for e in node.elts)
    return False


def canonical_srepr(text: object) -> str | None:
    """`text` re-printed if it is a srepr in the accepted vocabulary, else None."""
    if type(text) is not str or len(text) > MAX_CHARS:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not _ok(tree.body, 0):
        return None
    out = ast.unparse(tree)
    return out if len(out) <= MAX_CHARS else None

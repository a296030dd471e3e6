"""The Python-level layer: a static AST filter, restricted builtins and an import allow-list.

This is a *filter*, not the wall: allowed libraries themselves offer ways out (sympy's
`sympify` evaluates strings with the real builtins, numpy reaches ctypes, ...). It exists to
classify obviously hostile programs as FORBIDDEN early and cheaply; containment of anything
that gets past it is the job of `lockdown.py`, and integrity between programs is the job of the
process boundary (one fresh child per program, `worker.py`). It runs inside that child.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import sys
from types import CodeType

# Modules a program may import (with their already loaded submodules). Nothing is loaded lazily:
# once the worker is locked down the file system is gone. numpy and SymPy are preloaded only in the
# workers of their flavour (they make every fork dearer: numpy by a third, SymPy threefold), which
# run the programs whose text names them.
ALLOWED_MODULES = (
    "math", "cmath", "fractions", "decimal", "datetime", "itertools", "functools", "statistics",
    "collections", "re", "string", "random", "operator", "heapq", "bisect", "numbers", "typing",
    "copy", "numpy", "sympy",
)
# Flavour -> the allowed modules it does not preload.
FLAVOURS = {"plain": ("numpy", "sympy"), "numpy": ("sympy",), "sympy": ()}

# Attribute names that lead from ordinary objects to frames, code, globals or the OS.
_FORBIDDEN_ATTRS = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "tb_next", "func_globals",
    "os", "sys", "subprocess", "ctypes", "ctypeslib", "builtins", "f2py", "distutils", "system",
    "popen", "mro",
})
# Dunders a program may use: class boilerplate and the `if __name__ == "__main__"` idiom.
_ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__main__", "__str__", "__repr__", "__eq__",
                              "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__len__", "__iter__",
                              "__next__", "__call__", "__add__", "__sub__", "__mul__", "__truediv__"})
# Builtins replaced by a stub that reports FORBIDDEN when called.
FORBIDDEN_BUILTINS = ("open", "exec", "eval", "compile", "input", "breakpoint", "exit", "quit", "help",
                      "vars", "globals", "memoryview", "__import__")
_SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "complex",
    "dict", "dir", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "id",
    "int", "isinstance", "issubclass", "iter", "len", "list", "locals", "map", "max", "min", "next",
    "object", "oct", "ord", "pow", "property", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "staticmethod", "classmethod", "str", "sum", "super", "tuple", "type", "zip",
    "NotImplemented", "Ellipsis", "__build_class__",
)


class Forbidden(BaseException):
    """Raised by the policy; a BaseException so that `except Exception` in a program won't eat it."""


# Whether the current program attempted something forbidden, kept out of the program's reach so
# that catching `Forbidden` does not erase the verdict.
_denied: list[str | None] = [None]


def reset_denied() -> None:
    _denied[0] = None


def denied() -> str | None:
    """The first forbidden operation the current program attempted, if any."""
    return _denied[0]


def _deny(message: str) -> Forbidden:
    if _denied[0] is None:
        _denied[0] = message
    return Forbidden(message)


class Rejected(Exception):
    """A static verdict on a program's source: `status` is "syntax" or "forbidden"."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status = status


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name not in _ALLOWED_DUNDERS


def _forbidden_name(name: str) -> bool:
    return _is_dunder(name) or name in _FORBIDDEN_ATTRS


class _Checker(ast.NodeVisitor):
    """Finds forbidden constructs."""

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _forbidden_name(node.attr):
            raise Rejected("forbidden", f"attribute {node.attr!r}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if _is_dunder(node.id):
            raise Rejected("forbidden", f"name {node.id!r}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            raise Rejected("forbidden", "relative import")
        _check_import(node.module or "")
        for alias in node.names:
            if _forbidden_name(alias.name):
                raise Rejected("forbidden", f"import of {alias.name!r}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            _check_import(alias.name)


def _check_import(name: str) -> None:
    if name.partition(".")[0] not in ALLOWED_MODULES:
        raise Rejected("forbidden", f"import of {name!r} is not allowed")


# Names that class bodies and annotations bring into code objects on their own.
_IMPLICIT_DUNDERS = frozenset({"__module__", "__qualname__", "__classcell__", "__annotations__", "__doc__"})


def _needs_ast_check(code: CodeType) -> bool:
    """Whether compiled code uses any name the AST checker would look at closely.

    Most programs use none, and scanning code objects is far cheaper than walking the AST.
    """
    names = set(code.co_names) | set(code.co_varnames) | set(code.co_cellvars) | set(code.co_freevars)
    if names & _FORBIDDEN_ATTRS:
        return True
    if any(_is_dunder(name) and name not in _IMPLICIT_DUNDERS and name != "__class__" for name in names):
        return True
    if "__class__" in code.co_names:
        return True
    return any(isinstance(const, CodeType) and _needs_ast_check(const) for const in code.co_consts)


def compile_program(source: str, max_chars: int = 100_000) -> CodeType:
    """Compile and check. Raises `Rejected`."""
    if len(source) > max_chars:
        raise Rejected("forbidden", f"program longer than {max_chars} characters")
    try:
        code = compile(source, "<program>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        raise Rejected("syntax", f"{type(e).__name__}: {e}") from None
    except (RecursionError, MemoryError) as e:
        raise Rejected("syntax", f"{type(e).__name__}: program nested too deeply") from None
    if not _needs_ast_check(code):
        return code
    try:
        _Checker().visit(ast.parse(source, "<program>"))
    except RecursionError:
        raise Rejected("forbidden", "program nested too deeply") from None
    return code


def flavour_of(source: str) -> str:
    """The flavour of worker that runs a program: the lightest that preloads what its text names."""
    # numpy.random (which numpy loads on first use) maps some 90 more shared-library segments, and
    # every fork and exit of a worker pays for each mapping: only the sympy flavour preloads it, so
    # programs that name both go there.
    if "sympy" in source or ("numpy" in source and "random" in source):
        return "sympy"
    return "numpy" if "numpy" in source else "plain"


def preload(flavour: str) -> list[str]:
    """Import the allowed modules of `flavour` (those installed) and warm up their lazy parts."""
    loaded = []
    for name in ALLOWED_MODULES:
        if name in FLAVOURS[flavour]:
            continue
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError:
            continue
    if "sympy" in sys.modules:  # sympy imports some of its machinery on first use
        import sympy

        x, y = sympy.symbols("x y")
        sympy.solve([sympy.Eq(2 * x + y, 7), sympy.Eq(x - y, -1)], [x, y])
        sympy.simplify(sympy.sqrt(8) * x / 4 + sympy.Rational(1, 3))
        sympy.nsimplify(0.5)
        sympy.N(sympy.pi, 10)
        sympy.factorint(360)
        sympy.isprime(97)
        sympy.binomial(10, 3)
        sympy.sympify("x**2 + 1").subs(x, 2)
        sympy.Poly(x**2 - 1, x).all_roots()
        # ... and what tool-integrated MATH solutions call: sets, inequalities, calculus, matrices, LaTeX
        r = sympy.Symbol("r", real=True)
        sympy.solveset(x**2 - 4, x, domain=sympy.S.Reals), sympy.solveset(sympy.sin(x), x, sympy.Interval(0, 7))
        sympy.solve_univariate_inequality(r**2 - 5 * r - 14 < 0, r, relational=False)
        sympy.solve(r**2 - 3 < 0, r), sympy.reduce_inequalities([r > 1, r < 3], r)
        sympy.integrate(x**2 + sympy.sin(x), (x, 0, 1)), sympy.limit(sympy.sin(x) / x, x, 0), sympy.diff(x**3, x)
        sympy.summation(1 / x**2, (x, 1, sympy.oo)), sympy.series(sympy.exp(x), x, 0, 3)
        sympy.Matrix([[1, 2], [3, 4]]).inv(), sympy.Matrix([[1, 2], [3, 4]]).eigenvects()
        sympy.Product(x, (x, 1, 5)).doit()
        sympy.apart(1 / (x**2 - 1)), sympy.factor(x**2 - 1), sympy.expand((x + 1)**3), sympy.trigsimp(sympy.sin(x)**2 + sympy.cos(x)**2)
        sympy.latex(sympy.sqrt(2) / 2), sympy.nsolve(x**2 - 2, x, 1), sympy.primerange(2, 20), sympy.totient(12)
    if "numpy" in sys.modules:
        import numpy

        numpy.linalg.solve(numpy.eye(2), numpy.ones(2))
        numpy.mean(numpy.arange(4)), numpy.round(1.5)
        if flavour == "sympy":  # (see flavour_of)
            numpy.random.default_rng(0).random()
    return loaded


def _safe_import(name: str, globals=None, locals=None, fromlist=(), level: int = 0):
    if level or name.partition(".")[0] not in ALLOWED_MODULES or name not in sys.modules:
        raise _deny(f"import of {name!r} is not allowed")
    for attr in fromlist or ():
        if attr != "*" and _forbidden_name(attr):
            raise _deny(f"import of {attr!r} from {name!r}")
    return _real_import(name, globals, locals, fromlist, 0)


_real_import = builtins.__import__


def _checked_name(name: object) -> object:
    if isinstance(name, str) and (name.startswith("_") or name in _FORBIDDEN_ATTRS):
        raise _deny(f"attribute {name!r}")
    return name


def _getattr(obj, name, *default):
    return getattr(obj, _checked_name(name), *default)


def _hasattr(obj, name) -> bool:
    return hasattr(obj, _checked_name(name))


def _setattr(obj, name, value) -> None:
    setattr(obj, _checked_name(name), value)


def _delattr(obj, name) -> None:
    delattr(obj, _checked_name(name))


def _stub(name: str):
    def forbidden(*args, **kwargs):
        raise _deny(f"{name}() is not allowed")
    return forbidden


def make_builtins(print_function) -> dict:
    """The `__builtins__` of every program: safe names, exceptions, wrappers and stubs."""
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTINS}
    safe.update({name: value for name, value in vars(builtins).items()
                 if isinstance(value, type) and issubclass(value, BaseException)})
    safe.update({name: _stub(name) for name in FORBIDDEN_BUILTINS})
    safe.update(__import__=_safe_import, print=print_function, getattr=_getattr, hasattr=_hasattr,
                setattr=_setattr, delattr=_delattr)
    return safe

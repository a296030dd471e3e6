"""EoT text -> equations over a tiny AST. Model text is tokenized and parsed here, never evaluated.

AST nodes are tuples: ("num", int or Fraction), ("name", str), ("neg", a), (op, a, b) for op in
`+ - * / **`, and ("call", function, (args...)). Limits on size, nesting and literal length keep
hostile input cheap to reject; every rejection is an `EotError` carrying a failure class.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction

from solvers.outcome import Status

MAX_TEXT = 100_000  # characters in a rationale
MAX_LINE = 2_000  # characters in one line
MAX_EQUATIONS = 300
MAX_DEPTH = 40  # nesting of parentheses / unary operators
MAX_DIGITS = 60  # digits in one number literal

# Function name as written -> canonical name, and the number of arguments each takes.
FUNCTIONS = {"floor": "floor", "ceil": "ceil", "ceiling": "ceil", "round": "round", "abs": "abs",
             "min": "min", "max": "max", "sqrt": "sqrt"}
ARITY = {"floor": (1, 1), "ceil": (1, 1), "round": (1, 2), "abs": (1, 1), "min": (1, 50), "max": (1, 50),
         "sqrt": (1, 1)}
RELATIONS = {"=", "==", "<", ">", "<=", ">=", "!="}
_RELATION_TOKENS = {("op", r) for r in RELATIONS}

Node = tuple


class EotError(Exception):
    """A rationale the solver rejects, with its failure class and a human-readable cause."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Line:
    """One equation line: sides joined by relations (`a = b`, `a = b = c`, `x >= 0`)."""

    lineno: int
    sides: tuple[Node, ...]
    relations: tuple[str, ...]

    @cached_property  # asked for several times per line by the solver
    def assigned_name(self) -> str | None:
        """`name` for a plain assignment `name = expr`, else None."""
        if len(self.sides) == 2 and self.relations[0] in ("=", "==") and self.sides[0][0] == "name":
            return self.sides[0][1]
        return None


# Typography models use, mapped to ASCII before tokenizing; currency signs are dropped.
_TRANSLATE = str.maketrans({
    "×": "*", "·": "*", "∙": "*", "⋅": "*", "÷": "/", "−": "-", "–": "-", "—": "-", "≥": ">=", "≤": "<=",
    "≠": "!=", "²": "**2", "³": "**3", "[": "(", "]": ")", "{": "(", "}": ")", "\u00a0": " ", "\u202f": " ",
    "\u2009": " ", "$": "", "€": "", "£": "", "π": "pi",
})
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"  # with thousands separators
_PLAIN_NUMBER = r"\d+(?:\.\d+)?|\.\d+"  # inside function calls a comma separates arguments
_NAME = r"[^\W\d]\w*"
_OPS = r"\*\*|>=|<=|==|!=|[-+*/^()=<>,]"
# One match per token: (outside a call, inside one); what none of the groups takes is looked at by hand.
_TOKEN = tuple(re.compile(fr"(?P<op>{_OPS})|(?P<name>{_NAME})|(?P<num>{number})|(?P<space>\s+)")
               for number in (_NUMBER, _PLAIN_NUMBER))
_RELATION_CHARS = re.compile(r"[=<>]")


def tokenize(text: str, lineno: int) -> list[tuple[str, object]]:
    """Tokens `(kind, value)`: kind is num (int or Fraction), name, op, str or pct.

    `%` after a number or `)` is a percent (`20%`, `20% * x`); anywhere else, or when words follow
    it (`5 % hours worked`), it starts a trailing comment.
    """
    tokens: list[tuple[str, object]] = []
    calls: list[bool] = []  # for each open parenthesis: is it a function call's?
    i, n = 0, len(text)
    while i < n:
        m = _TOKEN[bool(calls and calls[-1])].match(text, i)
        kind = m.lastgroup if m else None
        if kind == "op":
            op = m.group()  # type: ignore[union-attr]
            if op == "(":
                calls.append(bool(tokens) and tokens[-1][0] == "name" and tokens[-1][1] in FUNCTIONS)
            elif op == ")" and calls:
                calls.pop()
            tokens.append(("op", "**" if op == "^" else op))
        elif kind == "name":
            tokens.append(("name", m.group()))  # type: ignore[union-attr]
        elif kind == "num":
            digits = m.group().replace(",", "")  # type: ignore[union-attr]
            if len(digits) > MAX_DIGITS:
                raise EotError(Status.UNSUPPORTED, f"line {lineno}: number with more than {MAX_DIGITS} digits")
            q = int(digits) if digits.isdigit() else Fraction(digits)
            tokens.append(("num", q.numerator if q.denominator == 1 else q))  # an int where whole
        elif kind is None:
            ch = text[i]
            if ch == "%":
                rest = text[i + 1:].lstrip()
                words_follow = bool(rest) and (rest[0].isalnum() or rest[0] == "_")
                if tokens and (tokens[-1][0] in ("num", "pct") or tokens[-1] == ("op", ")")) and not words_follow:
                    tokens.append(("pct", None))
                    i += 1
                    continue
                break  # a trailing comment
            if ch in "'\"":
                end = text.find(ch, i + 1)
                tokens.append(("str", text[i: end + 1 if end >= 0 else n]))
                i = end + 1 if end >= 0 else n
                continue
            if ch == ".":
                if tokens and (tokens[-1][0] == "name" or tokens[-1] == ("op", ")")):
                    raise EotError(Status.UNSUPPORTED, f"line {lineno}: attribute access is not allowed")
                raise EotError(Status.PARSE, f"line {lineno}: unexpected '.'")
            raise EotError(Status.PARSE, f"line {lineno}: unexpected character {ch!r}")
        i = m.end()  # type: ignore[union-attr]
    return tokens


_END = ("end", None)  # after the last token, so that a look-ahead never runs off the list


class _Parser:
    """Recursive descent over one line's tokens.

    expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary | implicit unary)* ;
    unary := ('-'|'+') unary | power ; power := postfix ('**' unary)? ; postfix := primary '%'* .
    Implicit multiplication (`2x`, `3(10)`, `(a)(b)`, `x(3)` where x is a variable) binds like `*`.
    """

    def __init__(self, tokens: list[tuple[str, object]], lineno: int, variables: set[str]) -> None:
        self.tokens, self.lineno, self.variables = tokens + [_END], lineno, variables
        self.pos, self.depth = 0, 0

    def fail(self, status: Status, what: str) -> EotError:
        return EotError(status, f"line {self.lineno}: {what}")

    def take_op(self, op: str) -> bool:
        kind, value = self.tokens[self.pos]
        if kind == "op" and value == op:
            self.pos += 1
            return True
        return False

    def line(self) -> tuple[tuple[Node, ...], tuple[str, ...]]:
        sides, relations = [self.expr()], []
        while True:
            kind, value = self.tokens[self.pos]
            if kind != "op" or value not in RELATIONS:
                break
            self.pos += 1
            relations.append(value)
            sides.append(self.expr())
        if kind != "end":
            raise self.fail(Status.PARSE, f"unexpected {value!r}")
        return tuple(sides), tuple(relations)  # type: ignore[arg-type]

    def expr(self) -> Node:
        node = self.term()
        while True:
            kind, op = self.tokens[self.pos]
            if kind != "op" or (op != "+" and op != "-"):
                return node
            self.pos += 1
            node = (op, node, self.term())

    def term(self) -> Node:
        node = self.unary()
        while True:
            kind, value = self.tokens[self.pos]
            if kind == "op" and (value == "*" or value == "/"):
                self.pos += 1
                node = (value, node, self.unary())
                continue
            if not (kind == "num" or kind == "name" or (kind == "op" and value == "(")):
                return node
            if kind == "num" or (kind == "name" and node[0] == "name"):
                raise self.fail(Status.PARSE, f"missing operator before {value!r}")
            node = ("*", node, self.unary())

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(Status.UNSUPPORTED, f"nesting deeper than {MAX_DEPTH}")
        kind, value = self.tokens[self.pos]
        if kind == "op" and (value == "-" or value == "+"):
            self.pos += 1
            node = self.unary()
            node = ("neg", node) if value == "-" else node
        elif kind in ("num", "name") and self._plain_leaf(kind):
            self.pos += 1
            node = (kind, value)  # what power, postfix and primary would make of it, without the calls
        else:
            node = self.power()
        self.depth -= 1
        return node

    def _plain_leaf(self, kind: str) -> bool:
        """A number or name not followed by `%`, `**` or (a name) `(`."""
        after, value = self.tokens[self.pos + 1]
        return after != "pct" and not (after == "op" and (value == "**" or (value == "(" and kind == "name")))

    def power(self) -> Node:
        node = self.postfix()
        if self.take_op("**"):
            node = ("**", node, self.unary())  # right-associative; `-2**2` is -(2**2)
        return node

    def postfix(self) -> Node:
        node = self.primary()
        while self.tokens[self.pos][0] == "pct":
            self.pos += 1
            node = ("/", node, ("num", 100))
        return node

    def primary(self) -> Node:
        kind, value = self.tokens[self.pos]
        if kind == "end":
            raise self.fail(Status.PARSE, "expression ends early")
        self.pos += 1
        if kind == "num":
            return ("num", value)
        if kind == "str":
            raise self.fail(Status.UNSUPPORTED, "string literals are not allowed")
        if kind == "name":
            if self.tokens[self.pos] == ("op", "("):
                if value in FUNCTIONS:
                    return self.call(FUNCTIONS[value])  # type: ignore[index]
                if value not in self.variables:
                    raise self.fail(Status.UNSUPPORTED, f"unknown function {value}()")
            return ("name", value)
        if value == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(Status.UNSUPPORTED, f"nesting deeper than {MAX_DEPTH}")
            node = self.expr()
            if not self.take_op(")"):
                raise self.fail(Status.PARSE, "unbalanced parentheses")
            self.depth -= 1
            return node
        raise self.fail(Status.PARSE, f"unexpected {value!r}")

    def call(self, function: str) -> Node:
        self.pos += 1  # "("
        args = [self.expr()]
        while self.take_op(","):
            args.append(self.expr())
        if not self.take_op(")"):
            raise self.fail(Status.PARSE, f"unclosed call to {function}()")
        low, high = ARITY[function]
        if not low <= len(args) <= high:
            raise self.fail(Status.PARSE, f"{function}() takes {low}-{high} arguments, got {len(args)}")
        return ("call", function, tuple(args))


def _clean(raw: str) -> str:
    line = raw.translate(_TRANSLATE).strip()
    return line[:-1].rstrip() if line.endswith(".") else line  # trailing full stop


def parse_text(text: str) -> list[Line]:
    """The equation lines of a rationale; comments, blank lines and lines without a relation are skipped."""
    if len(text) > MAX_TEXT:
        raise EotError(Status.UNSUPPORTED, f"input of {len(text):,} characters (limit {MAX_TEXT:,})")
    pending: list[tuple[int, list[tuple[str, object]]]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if len(raw) > MAX_LINE:
            raise EotError(Status.UNSUPPORTED, f"line {lineno} has {len(raw):,} characters (limit {MAX_LINE:,})")
        stripped = raw.strip()
        if not stripped or stripped[0] in "%#":
            continue
        for part in _clean(raw).split(";"):
            if _RELATION_CHARS.search(part):
                tokens = tokenize(part, lineno)
                if not _RELATION_TOKENS.isdisjoint(tokens):
                    pending.append((lineno, tokens))
    if len(pending) > MAX_EQUATIONS:
        raise EotError(Status.UNSUPPORTED, f"{len(pending)} equations (limit {MAX_EQUATIONS})")
    # A name called like a function (`x(3)`) is a product when the name is also used as a variable.
    variables = {str(v) for _, toks in pending for j, (k, v) in enumerate(toks)
                 if k == "name" and (j + 1 == len(toks) or toks[j + 1] != ("op", "("))}
    lines = []
    for lineno, tokens in pending:
        sides, relations = _Parser(tokens, lineno, variables).line()
        lines.append(Line(lineno, sides, relations))
    return lines

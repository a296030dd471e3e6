"""A canonical string for a LaTeX answer: the forms people write for one value made identical where
a string rewrite can tell (`\\dfrac19` -> `\\frac{1}{9}`, `\\left( 3 \\right)` -> `(3)`, `30^\\circ` ->
`30`, `\\$6` -> `6`, `1,000` -> `1000`, `\\text{(B)}` -> `B`), exact numbers in one form. Used for
reports and as the fast path of the checker; what it cannot decide goes to the symbolic path."""
from __future__ import annotations

import re

from solvers.mathans.numbers import format_number, parse_number

# Words that name a unit: dropped when they follow a value (`5 \text{ cm}^2`, `12 inches`; a bare
# word only after a space: `2m` is a product).
UNITS = (
    "units?|square units?|sq units?|cubic units?|cm|centimeters?|m|meters?|km|kilometers?|mm|in|inch(?:es)?"
    "|ft|feet|foot|yards?|yd|miles?|mi|mph|miles per hour|km/h|m/s|seconds?|sec|s|minutes?|min|hours?|hr|h"
    "|days?|weeks?|months?|years?|dollars?|cents?|euros?|pounds?|lbs?|ounces?|oz|grams?|g|kg|kilograms?"
    "|liters?|litres?|l|ml|gallons?|degrees?|deg|radians?|rad|percent|points?|people|students?|ways|items?"
    "|square (?:feet|inches|meters|centimeters|miles|yards)|cubic (?:feet|inches|meters|centimeters|yards)"
    "|sq\\.? ?(?:ft|in|m|cm)"
)
_UNIT_TEXT = re.compile(rf"(?<=.)\\(?:text|mbox|textrm|mathrm)\{{\s*(?:{UNITS})\s*\.?\}}(?:\^\{{?[23]\}}?)?", re.IGNORECASE)
_UNIT_WORD = re.compile(rf"(?<=[\d}}])\s+(?:{UNITS})\.?(?:\^\{{?[23]\}}?)?\s*$", re.IGNORECASE)
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad|\\(?:display|text|script)style|\\(?:left|right|big|Big|bigg|Bigg)(?=[^a-zA-Z])|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\circ(?![a-zA-Z])")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}")
_AND = re.compile(r"\s*,?\s*\\text\{\s*(?:and|or)\s*\}\s*|\s*,\s*(?:and|or)\s+")  # `7, -2, and -5`
_CHOICE = re.compile(r"^\(?([A-E])\)?$")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\\[a-zA-Z]+|[a-zA-Z]|\{[^{}]*\})\s*(\d|\\[a-zA-Z]+|[a-zA-Z]|\{[^{}]*\})")
# `\left(\begin{array}{cc}..\end{array}\right)` and SymPy's `\left[\begin{matrix}..\end{matrix}\right]`
_BARE_MATRIX = re.compile(r"^([(\[])\\begin\{(array|matrix)\}(?:\{[lcr|]*\})?(.*)\\end\{\2\}([)\]])$", re.DOTALL)
_SQRT_SHORT = re.compile(r"\\sqrt\s*(?!\[)(\d+|[a-zA-Z])")
_A_SLASH_B = re.compile(r"^(-?)(\d+)/(\d+)$")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:,|\{,\}|\\,)\d{3})+)(?![\d])")
_SPACE = re.compile(r"\s+")
_CMD_SPACE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])")
_EQ_LHS = re.compile(r"^(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+)\s*(?:=|\\in)\s*(?!.*=)")
_SYNONYMS = (
    (r"\\dfrac|\\tfrac|\\cfrac", r"\\frac"),
    (r"\\le(?![a-zA-Z])", r"\\leq"), (r"\\ge(?![a-zA-Z])", r"\\geq"), (r"\\neq|\\ne(?![a-zA-Z])", r"\\neq"),
    (r"\\infinity|\\inf(?![a-zA-Z])", r"\\infty"), (r"\\lbrace", r"\\{"), (r"\\rbrace", r"\\}"),
    (r"\\emptyset|\\varnothing", r"\\emptyset"), (r"\\to(?![a-zA-Z])", r"\\rightarrow"),
    (r"\u2212|\u2013|\u2014", "-"), (r"\\cdot(?=\s*10\^)", r"\\times"), (r"\\%|%", r"\\%"), (r"\\\$|\$", ""),
)
_SYNONYM_RES = [(re.compile(a), b) for a, b in _SYNONYMS]

MAX_NORMALISE = 20_000  # longer answers are only trimmed: rewriting them is not worth the time


def strip_wrappers(answer: str) -> str:
    """Drop what surrounds an answer without being part of it: `$`, `\\(`, `\\boxed{}`, a trailing period."""
    s = answer.strip()
    changed = True
    while changed and s:
        changed = False
        for a, b in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("\\boxed{", "}"), ("\\fbox{", "}")):
            if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b) and _wraps(s, a, b):
                s, changed = s[len(a):len(s) - len(b)].strip(), True
        if s.endswith((".", ",", ";")):
            s, changed = s[:-1].rstrip(), True
    return s


def _wraps(s: str, a: str, b: str) -> bool:
    """Whether `a`...`b` encloses all of `s` (`\\boxed{1}+\\boxed{2}` and `$1$ or $2$` are not wrapped)."""
    if b == "}":
        depth = 0
        for i, c in enumerate(s):
            depth += (c == "{") - (c == "}") if s[i - 1:i] != "\\" else 0
            if depth == 0 and i >= len(a) - 1:
                return i == len(s) - 1
        return False
    return a not in s[len(a):len(s) - len(b)] and b not in s[len(a):len(s) - len(b)]


def _text_answer(s: str) -> str | None:
    """`\\text{B}` for a multiple-choice letter, `\\text{words}` (lower case) for a word answer;
    None when the answer is math."""
    inner = _TEXT_CMD.sub(lambda m: m.group(1), s).strip()
    m = _CHOICE.match(inner.replace(" ", ""))
    if m and (inner != s or "(" in inner or len(inner) == 1):
        return f"\\text{{{m.group(1)}}}"
    if inner != s and re.fullmatch(r"[A-Za-z][A-Za-z ,.'-]*", inner):
        return f"\\text{{{text_of(inner)}}}"
    return None


def text_of(s: str) -> str:
    """An answer read as words: commands unwrapped, lower case, single spaces."""
    return _SPACE.sub(" ", _TEXT_CMD.sub(lambda m: m.group(1), s)).strip(" .").lower()


def is_text(s: str) -> bool:
    """Whether a normalised answer is a word or multiple-choice answer (`\\text{...}` whole)."""
    return s.startswith("\\text{") and s.endswith("}") and "{" not in s[6:-1] and "}" not in s[6:-1]


def drop_lhs(s: str) -> str:
    """`y = 2x+3` -> `2x+3`, `x \\in [-2,7)` -> `[-2,7)` (for a gold that is not an equation)."""
    return _EQ_LHS.sub("", s, count=1)


def normalize(answer: object) -> str:
    """The canonical string of an answer (see the module docstring); '' for no answer."""
    if answer is None:
        return ""
    s = strip_wrappers(str(answer))
    if len(s) > MAX_NORMALISE:
        return s
    if (text := _text_answer(s)) is not None:
        return text
    one_number = _is_one_number(s)  # decided on the answer as written: `45^\circ, 135^\circ` is a list
    s = _UNIT_TEXT.sub("", s)
    s = _DEGREES.sub("", s)
    for pat, rep in _SYNONYM_RES:
        s = pat.sub(rep, s)
    s = _SPACING.sub(" ", s)
    s = _AND.sub(",", s)
    s = _TEXT_CMD.sub(lambda m: m.group(1), s)
    s = _UNIT_WORD.sub("", s.strip())
    if one_number:
        s = _THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\{,\}|\\,|,", "", m.group(2)), s.replace(" ", ""))
    # spaces go, except where one ends a command (`\pi r` must not become `\pir`)
    s = _SPACE.sub("", _CMD_SPACE.sub("\\1\0", s)).replace("\0", " ")
    s = _FRAC_SHORT.sub(lambda m: f"\\frac{{{m.group(1).strip('{}')}}}{{{m.group(2).strip('{}')}}}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _A_SLASH_B.sub(r"\1\\frac{\2}{\3}", s)
    s = _BARE_MATRIX.sub(lambda m: f"\\begin{{{'pmatrix' if m.group(1) == '(' else 'bmatrix'}}}{m.group(3)}"
                         f"\\end{{{'pmatrix' if m.group(1) == '(' else 'bmatrix'}}}", s)
    s = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)
    s = strip_wrappers(s)
    value = parse_number(s)
    return format_number(*value) if value is not None else s


def _is_one_number(s: str) -> bool:
    """Thousands commas are read as such only where the whole answer is one number (`7,9,12` is a
    list) written without a space after the comma (`45, 135` is a list; `111,\\!111` is a number)."""
    s = re.sub(r"\s*\\!\s*|\\?\$", "", s)
    if re.search(r",\s", s):
        return False
    return bool(re.fullmatch(r"-?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?(?:\\?%)?", s))

"""Find the final answer in a model-written solution: the last `\\boxed{}`/`\\fbox{}`, else the text
after the last `The answer is` (or `Answer:`), else the last math span (`$...$`, `\\(...\\)`, `\\[...\\]`)."""
from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")
_ANSWER_IS = re.compile(r"(?:final\s+)?answer(?:\s+is\s*:?|\s*:)[\s*]*", re.IGNORECASE)  # `The answer is`, `**Answer:**`
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


def _closing_braces(text: str) -> dict[int, int]:
    """Position of each `{` -> position of its `}` (escaped `\\{` `\\}` skipped), in one pass."""
    closes, stack, i = {}, [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            closes[stack.pop()] = i
        i += 1
    return closes


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}` (nested braces); `\\boxed 5` too."""
    if not isinstance(text, str):
        return None
    matches = list(_BOXED.finditer(text))
    closes = _closing_braces(text) if matches else {}
    for m in reversed(matches):
        if m.group(1):
            end = closes.get(m.start(1))
            if end is not None:
                return text[m.start(1) + 1:end].strip()
        else:  # `\boxed 5`: one token
            tok = re.match(r"[^\s$]+", text[m.end():])
            if tok:
                return tok.group(0)
    return None


def _last_math(text: str) -> str | None:
    last = None
    for m in _MATH_SPAN.finditer(text):
        last = next(g for g in m.groups() if g is not None)
    return last.strip() if last and last.strip() else None


def extract_final(text: str) -> str | None:
    """The final answer of a solution as a LaTeX string, or None when it names none."""
    if not isinstance(text, str) or not text.strip():
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    marks = list(_ANSWER_IS.finditer(text))
    if marks:
        tail = text[marks[-1].end():].strip()
        span = _MATH_SPAN.match(tail)
        if span:
            return next(g for g in span.groups() if g is not None).strip()
        # up to the end of the sentence: a period that is not a decimal point, or a line end
        tail = re.split(r"\.(?!\d)\s|\.$|\n", tail, maxsplit=1)[0].strip()
        if tail:
            return tail
    return _last_math(text)

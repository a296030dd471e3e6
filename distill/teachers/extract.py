"""From a raw model response to the rationale a student learns from (and a checker reads).

Teacher responses and students' decoded outputs both go through `extract_rationale`, so that
what is validated at generation is exactly what is scored at evaluation.
"""
from __future__ import annotations

import re

from distill.records import THOUGHTS, InputError

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
# A model that keeps going after its answer often starts the next few-shot item.
_NEXT_ITEM = re.compile(r"\n\s*(?:Question|Q)\s*:", re.IGNORECASE)
_ANSWER_SENTENCE = re.compile(r"the (?:final )?answer is[^\n]*?(?:\.(?=\s|$)|$)", re.IGNORECASE | re.MULTILINE)
_ANS_LINE = re.compile(r"^\s*ans\s*=\s*[A-Za-z_]\w*\s*\.?\s*$")


def _fenced(text: str) -> str | None:
    """The body of the first fenced code block (the last one unclosed is taken to the end)."""
    m = _FENCE.search(text)
    return m.group(2) if m else None


def _cot(text: str) -> str:
    m = _ANSWER_SENTENCE.search(text)
    return text[: m.end()] if m else text


def _pot(text: str) -> str:
    code = _fenced(text)
    return code if code is not None else text


def _eot(text: str) -> str:
    body = _fenced(text)
    lines = (body if body is not None else text).splitlines()
    # Drop prose before the system: it starts at the first comment or equation line.
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("%") or "=" in line), 0)
    lines = lines[start:]
    end = next((i for i, line in enumerate(lines) if _ANS_LINE.match(line)), None)
    if end is not None:
        lines = lines[: end + 1]
        lines[-1] = lines[-1].rstrip().rstrip(".")
    return "\n".join(lines)


_BY_THOUGHT = {"cot": _cot, "pot": _pot, "eot": _eot}


def extract_rationale(thought: str, raw: str) -> str:
    """The rationale in `raw`: cut at the start of a next few-shot item; CoT up to the sentence
    `The answer is N.`; PoT the code (inside fences if any); EoT the `%`-commented system from
    its first line to `ans = name`."""
    if thought not in THOUGHTS:
        raise InputError(f"unknown thought {thought!r} (choose from {', '.join(THOUGHTS)})")
    text = (raw or "").replace("\r\n", "\n")
    m = _NEXT_ITEM.search(text)
    if m and text[: m.start()].strip():
        text = text[: m.start()]
    return _BY_THOUGHT[thought](text).strip("\n").rstrip()

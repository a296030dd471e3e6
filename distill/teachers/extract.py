"""From a raw model response to the rationale a student learns from (and a checker reads).

Teacher responses and students' decoded outputs both go through `extract_rationale`, so that
what is validated at generation is exactly what is scored at evaluation.
"""
from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
# A model that keeps going after its answer often starts the next few-shot item.
_NEXT_ITEM = re.compile(r"\n\s*(?:Question|Q)\s*:", re.IGNORECASE)
_ANSWER_SENTENCE = re.compile(r"the (?:final )?answer is[^\n]*?(?:\.(?=\s|$)|$)", re.IGNORECASE | re.MULTILINE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_ANS_LINE = re.compile(r"^\s*ans\s*=\s*[A-Za-z_]\w*\s*\.?\s*$")


def _fenced(text: str) -> str | None:
    """The body of the first fenced code block (the last one unclosed is taken to the end)."""
    m = _FENCE.search(text)
    return m.group(2) if m else None


def cot_rationale(text: str) -> str:
    """Up to the first `The answer is ...` sentence; a solution that boxes its answer later (MATH
    teachers write `the answer is $x$ when ...` on the way) runs to the end of that boxed line."""
    m = _ANSWER_SENTENCE.search(text)
    if m is None:
        return text
    boxed = [b for b in _BOXED.finditer(text) if b.start() >= m.end()]
    if not boxed:
        return text[: m.end()]
    end = text.find("\n", boxed[-1].end())
    return text if end < 0 else text[:end]


def pot_rationale(text: str) -> str:
    code = _fenced(text)
    return code if code is not None else text


def eot_rationale(text: str) -> str:
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


def tir_rationale(text: str) -> str:
    """A tool-integrated trace: its cells and outputs as written, then the text after the last cell
    cut as a chain of thought's (after the answer sentence or the boxed line)."""
    from solvers.tir import parse, render

    turns = parse(text)
    head = render(turns[:-1])
    return head + cot_rationale(turns[-1].text)


def extract_rationale(thought: str, raw: str) -> str:
    """The rationale in `raw`: cut at the start of a next few-shot item, then the thought's own
    extractor (CoT up to the sentence `The answer is N.`; PoT the code, inside fences if any; EoT
    the `%`-commented system from its first line to `ans = name`)."""
    from distill.thoughts import get_thought  # the registry imports this module

    extract = get_thought(thought).extract
    text = (raw or "").replace("\r\n", "\n")
    m = _NEXT_ITEM.search(text)
    if m and text[: m.start()].strip():
        text = text[: m.start()]
    return extract(text).strip("\n").rstrip()

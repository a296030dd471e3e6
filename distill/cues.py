"""Student input cues: `question + cue` selects which thought the student writes."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

from distill.records import THOUGHTS, InputError
from distill.resources import resource

DEFAULT_CUES = resource("prompts", "cues.yaml")


@lru_cache(maxsize=8)
def load_cues(name: str = "etd", path: str | os.PathLike | None = None) -> dict[str, str]:
    """The cue template of each thought from a cues file (`{question}` marks the question)."""
    path = Path(path or DEFAULT_CUES)
    try:
        sets = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read cues: {exc}", path) from None
    if not isinstance(sets, dict) or name not in sets:
        raise InputError(f"no cue set {name!r} (have: {', '.join(sets or {})})", path)
    cues = sets[name]
    for thought in THOUGHTS:
        if thought not in cues or "{question}" not in cues[thought]:
            raise InputError(f"cue set {name!r}: field {thought!r} missing or lacks {{question}}", path)
    return dict(cues)


def student_input(question: str, thought: str, cues: dict[str, str] | None = None) -> str:
    """The student's source text for a question and a thought."""
    template = (cues or load_cues())[thought]
    return template.replace("{question}", question.strip())

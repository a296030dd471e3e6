"""Student input cues: `question + cue` selects which thought the student writes."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from distill.records import InputError, read_yaml_mapping
from distill.resources import resource
from distill.thoughts import get_thought, thought_names

PROMPTS_DIR = resource("prompts")
DEFAULT_CUES = PROMPTS_DIR / "cues.yaml"


@lru_cache(maxsize=8)
def load_cues(name: str = "etd", path: str | os.PathLike | None = None) -> dict[str, str]:
    """The cue template of each thought from a cues file (`{question}` marks the question); a
    thought the set does not name gets the default cue of its registry entry."""
    path = Path(path or DEFAULT_CUES)
    sets = read_yaml_mapping(path, "cues")
    if name not in sets:
        raise InputError(f"no cue set {name!r} (have: {', '.join(sets or {})})", path)
    cues = sets[name]
    if not isinstance(cues, dict):
        raise InputError(f"cue set {name!r} must map thoughts to cue templates", path)
    for thought, cue in cues.items():
        get_thought(thought)
        if not isinstance(cue, str) or "{question}" not in cue:
            raise InputError(f"cue set {name!r}: field {thought!r} lacks {{question}}", path)
    return {t: cues.get(t, get_thought(t).cue) for t in thought_names()}


def student_input(question: str, thought: str, cues: dict[str, str] | None = None) -> str:
    """The student's source text for a question and a thought."""
    template = (cues or load_cues()).get(thought) or get_thought(thought).cue
    return template.replace("{question}", question.strip())

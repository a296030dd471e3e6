"""Few-shot prompt files (`prompts/<thought>.yaml`): data, not code.

The thought registry names each thought's shipped file. A file holds `thought`, `system`, `cue`
(the user-turn template with `{question}`, the student cue of the thought), optional `stop`
strings and `exemplars` (question, rationale, answer).
The prompt hash covers everything that reaches the teacher, so editing a file makes new requests.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from distill.records import InputError, read_yaml_mapping
from distill.resources import prompt_file
from distill.thoughts import get_thought, thought_names


@dataclass(frozen=True)
class Exemplar:
    question: str
    rationale: str
    answer: float | int | None = None


@dataclass(frozen=True)
class Prompt:
    thought: str
    system: str
    cue: str
    exemplars: tuple[Exemplar, ...] = ()
    stop: tuple[str, ...] = ()
    path: str = field(default="", compare=False)

    def user(self, question: str) -> str:
        return self.cue.replace("{question}", question.strip())

    def messages(self, question: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for ex in self.exemplars:
            msgs += [{"role": "user", "content": self.user(ex.question)}, {"role": "assistant", "content": ex.rationale}]
        return msgs + [{"role": "user", "content": self.user(question)}]

    @cached_property
    def hash(self) -> str:
        content = [self.system, self.cue, [(e.question, e.rationale) for e in self.exemplars], list(self.stop)]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:12]


def load_prompt(path: str | os.PathLike) -> Prompt:
    path = Path(path)
    data = read_yaml_mapping(path, "prompt")
    thought = data.get("thought")
    if not isinstance(thought, str) or thought.lower() not in thought_names():
        raise InputError(f"field 'thought' must be one of {', '.join(thought_names())}", path)
    cue = data.get("cue")
    if not isinstance(cue, str) or "{question}" not in cue:
        raise InputError("field 'cue' missing or lacks {question}", path)
    exemplars = []
    for i, ex in enumerate(data.get("exemplars") or []):
        if not isinstance(ex, dict) or not isinstance(ex.get("question"), str) or not isinstance(ex.get("rationale"), str):
            raise InputError(f"exemplar {i}: needs question and rationale strings", path)
        exemplars.append(Exemplar(ex["question"], ex["rationale"], ex.get("answer")))
    stop = data.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InputError("field 'stop' must be a list of strings", path)
    return Prompt(thought, str(data.get("system") or ""), cue, tuple(exemplars), tuple(stop), str(path))


def load_prompts(thoughts: list[str], files: list[str | os.PathLike] = (),
                 data_set: dict[str, str] | None = None) -> dict[str, Prompt]:
    """The prompt of each thought: from the user's files where given (a path, or the name of a
    shipped one: `math_cot.yaml`), else the data set's own
    (`data_set`: {thought: file}, e.g. MATH's prompts/math_cot.yaml), else the thought's shipped one."""
    given = {p.thought: p for p in map(load_prompt, map(_given_file, files))}
    extra = set(given) - set(thoughts)
    if extra:
        raise InputError(f"--prompt given for {', '.join(sorted(extra))}, which is not in --thought")
    own = data_set or {}  # may name other prompts too (`synth`): only the thoughts' are read here
    return {t: given.get(t) or load_prompt(prompt_file(own[t]) if t in own else get_thought(t).prompt_path())
            for t in thoughts}


def _given_file(name: str | os.PathLike) -> Path:
    """A --prompt value: a file, else a shipped prompt of that name."""
    if Path(name).is_file():
        return Path(name)
    if (shipped := prompt_file(name)).is_file():
        return shipped
    raise InputError("no such prompt file (nor a shipped prompt of that name)", name)

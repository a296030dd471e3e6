"""A simulated teacher for world problems: answers like a chat model, with injected errors.

Spec `world:` or `world:error_rate=0.2,seed=3,fence=0.5,world_seed=0,search=5000` (the text after
`world:`). A question is looked up among the problems drawn in this process, else by drawing up
to `search` candidates of each family's stream (about 20 s, once, for a question not in the world).
Each completion is decided by (seed, question, thought, round, sample index) alone, never by call
order; at temperature 0 every sample of a question is the same (greedy decoding). What was
injected is kept in `injected`, keyed by (record id, thought, raw text), for measurement.
A tool-integrated answer (thought `tir`, `distill.world.tir`) is written turn by turn: from
`Request.prefix` on, up to the next code cell when the stop sequences hold "```output".
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, fields

from distill.records import InputError
from distill.teachers.base import Completion, Request
from distill.world.generate import find, stable_hash
from distill.world.problem import Problem
from distill.world.tir import Plan, latex_plan, plan

_SEEDED_ID = re.compile(r"^world:\w+/s(\d+)-\d+$")
_CUED = re.compile(r"Question:\s*(.+?)\s*\n")


def _asked(messages: list[dict[str, str]]) -> str:
    """The question of the last user message (inside a `Question: ...` cue if there is one)."""
    content = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    m = _CUED.search(content)
    return m.group(1) if m else content


@dataclass
class WorldTeacher:
    error_rate: float = 0.2  # share of completions with an injected error
    seed: int = 0  # the teacher's randomness
    fence: float = 0.5  # share of PoT answers wrapped in a ```python fence
    world_seed: int = 0  # the world the questions come from (ids `world:train/sN-i` name theirs)
    search: int = 5000  # candidates per family stream drawn to find a question not yet seen
    name: str = "world"
    injected: dict[tuple[str, str, str], str | None] = field(default_factory=dict, repr=False)

    @classmethod
    def from_spec(cls, rest: str) -> "WorldTeacher":
        types = {"error_rate": float, "seed": int, "fence": float, "world_seed": int, "search": int}
        options = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in types:
                raise InputError(f"world teacher: bad option {item!r} (known: {', '.join(types)})")
            try:
                options[key] = types[key](value)
            except ValueError:
                raise InputError(f"world teacher: {key} must be a number, got {value!r}") from None
        if not 0 <= options.get("error_rate", 0) <= 1 or not 0 <= options.get("fence", 0) <= 1:
            raise InputError("world teacher: error_rate and fence must lie in [0, 1]")
        teacher = cls(**options)
        teacher.name = "world:" + ",".join(f"{f.name}={getattr(teacher, f.name)}" for f in fields(cls)
                                           if f.name in types)
        return teacher

    def write(self, question: str, thought: str, sample: int = 0, round: int = 0,
              world_seed: int | None = None) -> tuple[str, str | None] | None:
        """(raw answer, injected error kind or None) for one sample; None for a question not in the
        world. A TIR answer is its whole trace, with the outputs the teacher expects."""
        found = self.compose(question, thought, sample, round, world_seed)
        return (found.text, found.kind) if isinstance(found, Plan) else found

    def compose(self, question: str, thought: str, sample: int = 0, round: int = 0,
                world_seed: int | None = None) -> tuple[str, str | None] | Plan | None:
        """`write`'s answer; for TIR the `Plan` that the teacher writes turn by turn."""
        seeds = tuple(dict.fromkeys([self.world_seed if world_seed is None else world_seed, self.world_seed]))
        problem = find(question, seeds, limit=self.search)
        if problem is None:
            return None
        rng = random.Random(stable_hash("teacher", self.seed, problem.question, thought, round, sample))
        variant = rng.randrange(1 << 8)
        kinds = problem.error_kinds(thought)
        kind = rng.choice(kinds) if kinds and rng.random() < self.error_rate else None
        if thought == "tir":
            return plan(problem, kind, rng, variant) if isinstance(problem, Problem) else latex_plan(problem, kind, rng, variant)
        if kind is not None:
            text, kind = problem.inject(thought, kind, rng, variant)
        else:
            text = problem.render(thought, variant)
        if thought == "pot" and rng.random() < self.fence:
            text = f"```python\n{text}\n```"
        return text, kind

    async def complete(self, request: Request) -> list[Completion]:
        meta = request.meta
        question = meta.get("question") or _asked(request.messages)
        thought, rid = meta.get("thought", "cot"), str(meta.get("id", ""))
        seeded = _SEEDED_ID.match(rid)
        prompt_tokens = sum(len(m.get("content", "").split()) for m in request.messages)
        out = []
        for j in range(request.n):
            greedy = request.temperature == 0
            found = self.compose(question, thought, 0 if greedy else j, 0 if greedy else int(meta.get("round", 0)),
                                 int(seeded.group(1)) if seeded else None)
            if found is None:
                out.append(Completion(None, "stop", prompt_tokens, 0, error="unknown-question"))
                continue
            if isinstance(found, Plan):  # one turn of a trace: up to the next cell to run, from the prefix on
                text, kind = found.continuation(request.prefix, request.stop), found.kind
                self.injected[rid, thought, found.text] = kind
            else:
                text, kind = found
                self.injected[rid, thought, text] = kind
            out.append(Completion(text, "stop", prompt_tokens, len(text.split())))
        return out

    async def aclose(self) -> None:
        return None

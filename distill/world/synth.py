"""A world teacher that also writes new questions, for `distill synth` on the simulated world.

Asked to write a question (a request whose meta has `task: write-question`), it draws a new
problem of the seed's family from far along the same world stream (candidates OFFSET to
OFFSET + SPAN, train split only), so its truth is known and `WorldTeacher` (and plain `world:`
teachers in later stages) can find and answer it; otherwise it answers like `WorldTeacher`,
with injected errors. Its reply follows prompts/synth.yaml: `New question`, `Solution`, `Check`,
`Final question`. With probability `flaw_rate` the writing goes wrong in one of FLAWS:
`amended` (the draft lacks its question; the final one is fixed: usable), `truncated`, `copy`
(the seed again) or `empty` (no final question): the last three must be rejected by synth.

Spec: the `world:` options plus `flaw_rate`, e.g. `world:error_rate=0.2,flaw_rate=0.1`.
A cold process finds a synthesized question again by drawing up to OFFSET + SPAN candidates per
family (some seconds; plain `world:` teachers do so with their default `search`); in the process
that wrote it, the look-up is immediate.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from distill.records import InputError
from distill.teachers.base import WRITE_QUESTION as TASK
from distill.teachers.base import Completion, Request
from distill.world.generate import AnyProblem, candidate, find, split_of, stable_hash
from distill.world.teacher import WorldTeacher

OFFSET, SPAN = 1000, 4000  # stream candidates used for new questions: past those of the usual splits
FLAWS = ("amended", "truncated", "copy", "empty")


@dataclass
class WorldSynthTeacher(WorldTeacher):
    flaw_rate: float = 0.1  # share of question-writing answers with a flaw (see FLAWS)

    @classmethod
    def from_spec(cls, rest: str) -> "WorldSynthTeacher":
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        ours = [p for p in parts if p.partition("=")[0] == "flaw_rate"]
        teacher = super().from_spec(",".join(p for p in parts if p not in ours))
        assert isinstance(teacher, cls)
        for part in ours:
            try:
                teacher.flaw_rate = float(part.partition("=")[2])
            except ValueError:
                raise InputError(f"world teacher: flaw_rate must be a number, got {part!r}") from None
        if not 0 <= teacher.flaw_rate <= 1:
            raise InputError("world teacher: flaw_rate must lie in [0, 1]")
        teacher.name += f",flaw_rate={teacher.flaw_rate}"
        return teacher

    def find(self, question: str) -> AnyProblem | None:
        """The world problem with this text (seed or synthesized), None if there is none."""
        return find(question, (self.world_seed,), limit=max(self.search, OFFSET + SPAN))

    def truth(self, question: str) -> int | str | None:
        """The gold answer of a question, for measuring the precision of synth's labels."""
        problem = self.find(question)
        return None if problem is None else problem.answer

    def new_problem(self, seed: AnyProblem, rng: random.Random) -> AnyProblem:
        """A train-split problem of the seed's family, other than the seed."""
        while True:
            problem = candidate(self.world_seed, seed.family, OFFSET + rng.randrange(SPAN))
            if split_of(problem.question) == "train" and problem.question != seed.question:
                return problem

    def write_question(self, seed_question: str, sample: int) -> str | None:
        """The reply to a question-writing request; None for a seed not in the world."""
        seed = self.find(seed_question)
        if seed is None:
            return None
        rng = random.Random(stable_hash("synth", self.seed, seed.question, sample))
        problem = self.new_problem(seed, rng)
        flaw = rng.choice(FLAWS) if rng.random() < self.flaw_rate else None
        draft = final = problem.question
        check = ("The problem is complete, consistent, and its answer is "
                 + ("a whole number." if isinstance(problem.answer, int) else "exact."))
        if flaw == "amended":
            draft = " ".join(f.sentence for f in problem.facts)
            check = "The draft never says what to find; I add the question."
        elif flaw == "truncated":
            final = final[: rng.randrange(len(final) // 3, len(final) - 2)].rstrip(" .?")
        elif flaw == "copy":
            final = seed.question
        elif flaw == "empty":
            final = ""
        return (f"New question: {draft}\nSolution: {problem.render('cot', rng.randrange(256))}\n"
                f"Check: {check}\nFinal question: {final}")

    async def complete(self, request: Request) -> list[Completion]:
        if request.meta.get("task") != TASK:
            return await super().complete(request)
        prompt_tokens = sum(len(m.get("content", "").split()) for m in request.messages)
        greedy = request.temperature == 0
        out = []
        for j in range(request.n):
            sample = 0 if greedy else int(request.meta.get("round", 0)) * request.n + j
            text = self.write_question(str(request.meta.get("question", "")), sample)
            out.append(Completion(None, "stop", prompt_tokens, 0, error="unknown-question") if text is None
                       else Completion(text, "stop", prompt_tokens, len(text.split())))
        return out

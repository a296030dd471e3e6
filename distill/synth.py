"""`distill synth`: write new questions from seed questions (Xwin-Math style), label them by agreement.

1. *Write.* For candidate c, seed `seeds[c % len(seeds)]` and k = c // len(seeds), the teacher
   gets prompts/synth.yaml: it writes a new problem, solves it, checks and amends it, in one call.
   The text after the last `Final question:` is the candidate; it is rejected when the call failed
   or the question is empty or truncated, a near-copy of a seed or of an earlier candidate
   (word n-grams with numbers kept, overlap coefficient), or overlaps an evaluation set
   (`distill.decontam`). Answers are journaled (`OUT.questions.jsonl.journal`): a rerun pays nothing twice.
2. *Solve.* The surviving questions go through `distill.generate` (its journal, concurrency,
   checkers and ledger) with no gold: every thought x sample is one vote, into `OUT.solutions.jsonl`.
3. *Accept.* A question is accepted when its majority answer has at least `agreement` of all the
   votes asked for (failed samples vote for nothing) and no other answer ties it; that answer
   becomes its gold. Accepted questions go to OUT (a data set for `distill generate --data`),
   rejected ones, with their reason, to `OUT.rejected.jsonl`; a summary to `OUT.report.json`.

A teacher with a `truth(question)` method (the simulated world) also gets the precision of the
accepted answers measured, with and without voting.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from distill.data import load, prompt_set
from distill.decontam import DEFAULT_EVAL_SETS, NGRAM, THRESHOLD, EvalIndex, NgramIndex, default_eval_sets
from distill.dedupe import normalise
from distill.generate import Settings, agenerate, ledger_path, request_key
from distill.journal import Journal, remove_run
from distill.ledger import Ledger, Price, find_price, usage_text
from distill.progress import live_table
from distill.records import ANSWER_FORMAT, InputError, Record, latex_answers, write_jsonl
from distill.resources import prompt_file as prompt_file_of
from distill.resources import resource
from distill.teachers import Completion, Request, Teacher, TeacherError, make_teacher
from distill.teachers.base import WRITE_QUESTION
from distill.teachers.prompts import Exemplar, Prompt, load_prompts
from distill.thoughts import parse_thoughts
from solvers.answers import is_correct
from solvers.mathans import equivalent

DEFAULT_PROMPT = resource("prompts", "synth.yaml")
_FINAL = re.compile(r"final question\s*\**\s*:", re.IGNORECASE)
_NEXT_LABEL = re.compile(r"^\W*(?:new question|question|solution|check|answer|final question)\W*:", re.IGNORECASE | re.MULTILINE)
_ENDED = re.compile(r"[?.!][\"')\]]*$")
_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
MIN_WORDS = 6


def load_write_prompt(path: str | os.PathLike | None = None) -> Prompt:
    """prompts/synth.yaml as a `Prompt`: system, user `template` (with `{question}`), exemplars
    of (seed question, response), stop strings. Its hash goes into the request keys."""
    path = Path(path or DEFAULT_PROMPT)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        exemplars = tuple(Exemplar(str(e["question"]), str(e["response"])) for e in data.get("exemplars") or [])
        template, stop = data["template"], tuple(data.get("stop") or ())
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"cannot read the question-writing prompt: {exc!r}".splitlines()[0], path) from None
    if not isinstance(template, str) or "{question}" not in template:
        raise InputError("field 'template' missing or lacks {question}", path)
    return Prompt("synth", str(data.get("system") or ""), template, exemplars, stop, str(path))


def parse_question(raw: str) -> tuple[str | None, str | None]:
    """(the final question, None), or (None, why there is none): the text after the last
    `Final question:` label, up to the next label, on one line."""
    finals = list(_FINAL.finditer(raw))
    if not finals:
        return None, "no final question"
    rest = raw[finals[-1].end():]
    nxt = _NEXT_LABEL.search(rest)
    question = " ".join(rest[: nxt.start() if nxt else None].replace("**", "").split())
    if len(question.split()) < MIN_WORDS:
        return None, "empty"
    if not _ENDED.search(question):
        return None, "truncated"
    return question, None


class NearDuplicates(NgramIndex):
    """Questions seen so far, as sets of word n-grams of their normalised text. Unlike
    decontamination, numbers are kept: the same story with new numbers is a new problem."""

    def __init__(self, n: int = 5, threshold: float = 0.8):
        super().__init__(n, threshold, split=lambda text: _WORD.findall(normalise(text).lower()))

    def find(self, text: str) -> str | None:
        """The id of a question seen before that `text` overlaps by the threshold or more."""
        hit = self.match(text)
        return None if hit is None else hit.eval_id


def same_answer(a: Any, b: Any) -> bool:
    """Votes for one answer: numbers within the answer tolerance (solvers.answers), LaTeX answers
    (MATH-style questions) equal mathematically (solvers.mathans)."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b or equivalent(a, b)
    return is_correct(a, b)


@dataclass
class Tally:
    """The votes of one question: predictions by thought (None: the sample failed)."""

    votes: dict[str, list[Any]] = field(default_factory=dict)

    def answers(self) -> list[tuple[Any, int]]:
        """Distinct answers (equal within the answer tolerance) and their counts, most first."""
        groups: list[list[Any]] = []
        for pred in (p for preds in self.votes.values() for p in preds if p is not None):
            group = next((g for g in groups if same_answer(pred, g[0])), None)
            group.append(pred) if group is not None else groups.append([pred])
        return sorted(((g[0], len(g)) for g in groups), key=lambda a: -a[1])

    def decide(self, expected: int, agreement: float) -> tuple[Any, float]:
        """(majority answer or None, its share of the `expected` votes)."""
        answers = self.answers()
        if not answers:
            return None, 0.0
        (answer, top), share = answers[0], answers[0][1] / expected
        tied = len(answers) > 1 and answers[1][1] == top
        return (None if tied or share < agreement else answer), share


@dataclass
class SynthSettings:
    n: int = 1000  # candidate questions to write
    thoughts: tuple[str, ...] = ("pot", "eot")  # solving thoughts
    samples: int = 2  # solving samples per question and thought
    agreement: float = 0.75  # share of all votes the majority answer needs
    temperature: float = 0.7  # of writing and of solving
    max_tokens: int = 1024  # writing (solving uses generate's 512)
    dedupe_ngram: int = 5
    dedupe_threshold: float = 0.8
    decontaminate: tuple[str, ...] = DEFAULT_EVAL_SETS
    decontam_ngram: int = NGRAM
    decontam_threshold: float = THRESHOLD

    def check(self) -> None:
        if not parse_thoughts(self.thoughts):
            raise InputError("--thoughts must name at least one thought")
        if self.n < 1 or self.samples < 1:
            raise InputError("--n and --samples must be at least 1")
        if not 0 < self.agreement <= 1 or not 0 < self.dedupe_threshold <= 1:
            raise InputError("--agreement and --dedupe-threshold must lie in (0, 1]")

    @property
    def votes(self) -> int:
        return len(self.thoughts) * self.samples


@dataclass
class Candidate:
    record: Record  # answer None until accepted
    reason: str | None = None  # why it was rejected (None: still in)


@dataclass
class Progress:
    """Live counters for the display and the report."""

    written: int = 0  # question-writing requests done
    sent: int = 0
    resumed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # candidates by reason
    solving: int = 0  # questions sent to solving
    decided: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.decided, 1)


@dataclass
class SynthResult:
    out: Path
    report: dict[str, Any]
    ledger: Ledger


def paths(out: Path) -> dict[str, Path]:
    """Every file of a synth run into OUT (journals sit beside their files)."""
    stem = out.with_suffix("")
    return {"questions": Path(f"{stem}.questions.jsonl"), "solutions": Path(f"{stem}.solutions.jsonl"),
            "rejected": Path(f"{stem}.rejected.jsonl"), "report": Path(f"{stem}.report.json"),
            "ledger": ledger_path(out)}


def latex_mark(seed: Record) -> dict[str, str]:
    """The mark of a question whose answers are LaTeX (written from a MATH seed): solved, voted on
    and read back as LaTeX (distill.records.ANSWER_FORMAT)."""
    return {ANSWER_FORMAT: "latex"} if latex_answers(seed) else {}


def load_seeds(spec: str, limit: int | None = None, data_dir: str | None = None) -> list[Record]:
    return load(spec, limit=limit, data_root=data_dir).records


class Synth:
    def __init__(self, seeds: Sequence[Record], source: str, teacher: Teacher, out: Path, prompt: Prompt,
                 settings: SynthSettings, ledger: Ledger, eval_index: EvalIndex | None):
        self.seeds, self.source, self.teacher, self.out = seeds, source, teacher, out
        self.prompt, self.settings, self.ledger, self.eval_index = prompt, settings, ledger, eval_index
        self.paths = paths(out)
        self.progress = Progress()
        self.journal = Journal(self.paths["questions"])
        self.answers: dict[int, list[Completion]] = {}  # candidate -> its writing completions
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.cands: list[Candidate] = []  # once written and filtered
        self._offset = 0  # of the solutions file read so far

    # -- 1. write
    def request(self, c: int) -> tuple[Record, Request, str]:
        seed, k = self.seeds[c % len(self.seeds)], c // len(self.seeds)
        request = Request(self.prompt.messages(seed.question), 1, self.settings.temperature, 1.0,
                          self.settings.max_tokens, list(self.prompt.stop) or None,
                          meta={"task": WRITE_QUESTION, "id": seed.id, "question": seed.question, "round": k})
        return seed, request, request_key(self.teacher.name, seed, self.prompt, request, k)

    async def write(self, c: int) -> None:
        _, request, key = self.request(c)
        completions, sent = await self.journal.answer(key, lambda: self.teacher.complete(request))
        if sent:
            self.progress.sent += 1
            self.ledger.paid(completions)
        else:
            self.progress.resumed += 1
        self.answers[c] = completions
        self.progress.written += 1

    def candidates(self) -> list[Candidate]:
        """Parse and filter the written questions, in candidate order (so reruns agree)."""
        near = NearDuplicates(self.settings.dedupe_ngram, self.settings.dedupe_threshold)
        for seed in self.seeds:
            near.add(seed.id, seed.question)
        seed_ids = {s.id for s in self.seeds}
        out = []
        for c in range(self.settings.n):
            seed, _, key = self.request(c)
            comp = self.answers[c][0]
            question, reason = parse_question(comp.text) if comp.error is None and comp.text else (None, f"teacher: {comp.error}")
            rid = f"synth/{seed.id}/{c // len(self.seeds)}"
            if question is not None:
                if (dup := near.find(question)) is not None:
                    reason = "copy of a seed" if dup in seed_ids else "duplicate"
                elif self.eval_index is not None and (hit := self.eval_index.match(question)) is not None:
                    reason = f"contaminated ({hit.eval_id})"
                else:
                    near.add(rid, question)
            meta = {"seed_id": seed.id, "accepted": False, **latex_mark(seed), "raw": comp.text,
                    "usage": {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens}}
            rec = Record(id=rid, question=question or "", source=f"synth:{self.source}", model=self.teacher.name,
                         request=key, meta=meta)
            out.append(Candidate(rec, reason))
            if reason is not None:
                self.progress.rejected[reason.partition(" (")[0]] += 1
        return out

    # -- 2. solve, 3. accept
    def refresh_votes(self) -> None:
        """While solving, fold the newest votes in from the solutions file (for the live table)."""
        if self.progress.solving:
            self.read_solutions()
            self.decide(self.cands)

    def read_solutions(self) -> None:
        """Add the votes in the solutions file written since the last call."""
        path = self.paths["solutions"]
        if not path.exists():
            return
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            r = Record.from_dict(json.loads(line))
            if r.thought in self.settings.thoughts and r.sample < self.settings.samples:
                pred = r.prediction if r.status == "ok" else None
                self.tallies[r.id].votes.setdefault(r.thought, []).append(pred)

    def decide(self, cands: list[Candidate]) -> None:
        s, progress = self.settings, self.progress
        progress.decided = progress.accepted = 0
        for cand in cands:
            if cand.reason is not None and cand.reason != "no agreement":
                continue
            tally = self.tallies.get(cand.record.id, Tally())
            if sum(map(len, tally.votes.values())) < s.votes:
                continue  # still being solved (or a sample failed transiently: a rerun retries it)
            answer, share = tally.decide(s.votes, s.agreement)
            cand.record.answer, cand.reason = answer, None if answer is not None else "no agreement"
            cand.record.meta.update(agreement=round(share, 4), votes=tally.votes, accepted=answer is not None)
            progress.decided += 1
            progress.accepted += answer is not None

    async def main(self, concurrency: int, timeout: float, workers: int | None, show_progress: bool) -> list[Candidate]:
        self.journal.load()
        for completions in self.journal.answered.values():
            self.ledger.resumed(completions)
        self.journal.open()
        todo = iter(range(self.settings.n))

        async def worker() -> None:
            for c in todo:
                await self.write(c)

        try:
            async with live_table(lambda: progress_table(self), enabled=show_progress, refresh=self.refresh_votes):
                await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
                self.cands = cands = self.candidates()
                items = [c.record for c in cands if c.reason is None]
                self.progress.solving = len(items)
                settings = Settings(samples=self.settings.samples, temperature=self.settings.temperature)
                prompts = load_prompts(list(self.settings.thoughts), data_set=prompt_set(self.source))  # MATH: boxed answers
                result = await agenerate(items, self.settings.thoughts, self.teacher, self.paths["solutions"],
                                         prompts=prompts, settings=settings, concurrency=concurrency, price=self.ledger.price,
                                         timeout=timeout, workers=workers)
        finally:
            self.journal.close()
        for mine, theirs in ((self.ledger.run, result.ledger.run), (self.ledger.total, result.ledger.total)):
            mine.add(theirs.prompt_tokens, theirs.completion_tokens, theirs.requests)
        self.read_solutions()
        self.decide(cands)
        return cands

    def report(self, cands: list[Candidate]) -> dict[str, Any]:
        p, s = self.progress, self.settings
        accepted = [c.record for c in cands if c.record.answer is not None]
        report: dict[str, Any] = {
            "seeds": min(len(self.seeds), s.n), "candidates": len(cands), "solved": p.solving, "accepted": len(accepted),
            "acceptance_of_solved": p.accepted / max(p.solving, 1),
            "rejected": dict(Counter(c.reason.partition(" (")[0] for c in cands if c.reason).most_common()),
            "settings": {**asdict(s), "votes": s.votes}, "teacher": self.teacher.name,
            "ledger": self.ledger.to_dict(),
        }
        truth = getattr(self.teacher, "truth", None)
        if callable(truth):
            right = sum(same_answer(r.answer, truth(r.question)) for r in accepted)
            first = [(c.record, next((v for t in s.thoughts for v in self.tallies[c.record.id].votes.get(t, [])[:1]), None))
                     for c in cands if c.record.id in self.tallies]
            report["precision"] = right / len(accepted) if accepted else None
            report["precision_first_sample"] = (sum(same_answer(v, truth(r.question)) for r, v in first) / len(first)
                                                if first else None)
        return report


def progress_table(run: Synth) -> Table:
    p, n = run.progress, run.settings.n
    table = Table(title=f"distill synth  {run.teacher.name}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("written", f"{p.written}/{n} questions  ({p.sent} sent, {p.resumed} from the journal)")
    if p.rejected:
        table.add_row("rejected", ", ".join(f"{k} {v}" for k, v in p.rejected.most_common()))
    if p.solving:
        table.add_row("solved", f"{p.decided}/{p.solving} questions x {run.settings.votes} votes")
        table.add_row("accepted", f"{p.accepted}/{p.decided} = {p.acceptance:.1%}  "
                                  f"(agreement >= {run.settings.agreement:g})")
    table.add_row("tokens (writing)", usage_text(run.ledger, run.ledger.run))
    return table


def synth(
    seed_data: str | Sequence[Record],
    teacher: str | Teacher,
    out: str | os.PathLike,
    *,
    settings: SynthSettings | None = None,
    limit: int | None = None,
    prompt_file: str | os.PathLike | None = None,
    concurrency: int = 16,
    overwrite: bool = False,
    prices: str | os.PathLike | None = None,
    price: Price | None = None,
    data_dir: str | None = None,
    teacher_options: dict[str, Any] | None = None,
    timeout: float = 5.0,
    workers: int | None = None,
    show_progress: bool = False,
) -> SynthResult:
    """Write `settings.n` new questions from seeds (a spec like `gsm8k:train` or records) with a
    teacher (a spec or a `Teacher`; a backend's `make_writer`, if it has one, builds it),
    label them by agreement, and write the accepted ones to `out`. Rerunning resumes."""
    settings = settings or SynthSettings()
    settings.check()
    out = Path(out)
    files = paths(out)
    if overwrite:
        for path in (out, files["rejected"], files["report"], files["ledger"], ledger_path(files["solutions"])):
            path.unlink(missing_ok=True)
        remove_run(files["questions"])
        remove_run(files["solutions"])
    elif out.exists() and not Journal(files["questions"]).path.exists():
        raise InputError("output exists but no journal of a synth run to resume; pass --overwrite to replace it", out)
    seeds = load_seeds(seed_data, limit, data_dir) if isinstance(seed_data, str) else list(seed_data)[:limit]
    if not seeds:
        raise InputError(f"no seed questions in {seed_data if isinstance(seed_data, str) else 'the given records'}")
    source = seed_data if isinstance(seed_data, str) else seeds[0].source
    if settings.decontaminate == DEFAULT_EVAL_SETS:  # MATH seeds: also against math:test and math500
        settings = replace(settings, decontaminate=default_eval_sets(s.source for s in seeds))
    eval_index = (EvalIndex.load(settings.decontaminate, n=settings.decontam_ngram,
                                 threshold=settings.decontam_threshold, data_root=data_dir)
                  if settings.decontaminate else None)
    own = prompt_set(source).get("synth")  # the seeds' set may name its own (MATH: prompts/math_synth.yaml)
    prompt = load_write_prompt(prompt_file or (prompt_file_of(own) if own else None))

    async def main() -> SynthResult:
        try:
            built = make_teacher(teacher, writer=True, **(teacher_options or {})) if isinstance(teacher, str) else teacher
        except TeacherError as exc:
            raise InputError(str(exc)) from None
        ledger = Ledger.start(built.name, price or find_price(built.name, prices))
        run = Synth(seeds, source, built, out, prompt, settings, ledger, eval_index)
        try:
            cands = await run.main(concurrency, timeout, workers, show_progress)
        except TeacherError as exc:
            raise InputError(str(exc)) from None
        finally:
            ledger.save(files["ledger"])
            if isinstance(teacher, str):
                await built.aclose()
        write_jsonl(out, (c.record for c in cands if c.record.answer is not None))
        write_jsonl(files["rejected"], ({**c.record.to_dict(), "reason": c.reason} for c in cands if c.record.answer is None))
        report = run.report(cands)
        files["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return SynthResult(out, report, ledger)

    return asyncio.run(main())


__all__ = ["SynthSettings", "SynthResult", "Tally", "NearDuplicates", "parse_question", "synth"]

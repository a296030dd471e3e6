"""`distill generate`: prompt a teacher for rationales, validate each one, journal everything.

Work is split into *requests*: one question x thought x round, asking for `n` samples (a TIR
request: its samples go on over several teacher rounds, `distill.teachers.rounds`). A bounded
pool of workers (`concurrency`) sends requests; answers are journaled the moment they arrive and
handed to one validator task, which checks them in batches in a worker thread (the PoT executor
pool or the EoT solver) while the workers go on waiting for the teacher. The validator writes
the records and marks the request written. See `distill.journal` for resuming.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

from rich.table import Table

from distill.checking import Checker
from distill.data import load, prompt_set
from distill.journal import Journal, remove_run
from distill.ledger import Ledger, Price, find_price, usage_text
from distill.logprobs import META_KEY
from distill.progress import eta, live_table
from distill.records import InputError, Record, carried_meta, dumps, latex_answers
from distill.teachers import Completion, Request, Teacher, TeacherError, make_teacher
from distill.teachers.base import is_transient
from distill.teachers.extract import extract_rationale
from distill.teachers.rounds import Rounds, tool_stop, trace_key, uses_tools
from distill.teachers.prompts import Prompt, load_prompts
from distill.thoughts import TIR_TIME_FACTOR, parse_thoughts
from solvers.grading import grade_many

RECORD_FIELDS = [f.name for f in fields(Record)]
VALIDATE_BATCH = 256  # answers checked per call into the checker thread


@dataclass
class Stats:
    """Live counters for the progress display and the final summary."""

    requests: int = 0  # request slots of this run (rounds skipped by until-correct count as done)
    done: int = 0
    called: int = 0  # requests sent to the teacher by this run
    resumed: int = 0  # requests answered by an earlier run
    samples: Counter[str] = field(default_factory=Counter)  # by thought
    correct: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # samples by failure class
    written: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def kept_rate(self, thought: str) -> float:
        return self.correct[thought] / max(self.samples[thought], 1)


@dataclass
class Result:
    out: Path
    stats: Stats
    ledger: Ledger
    retries: Counter[str]  # failed teacher attempts by class (most were retried)
    audit: str | None = None  # the teacher backend's own report on the run, if it has one
    failed: int = 0  # samples the teacher gave no usable answer for
    skipped: list[Any] = field(default_factory=list)  # data set items left out (gold not usable), as data.Skipped


@dataclass
class Settings:
    samples: int = 1  # samples per question x thought (the most, with until_correct)
    per_request: int | None = None  # samples per request (default: all at once, or until_correct)
    until_correct: int | None = None  # stop sampling a question once this many are correct
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    keep: str = "all"  # all | correct
    logprobs: int = 0  # > 0: keep the teacher's top-k log-probs per generated token (record meta, for kd)
    max_rounds: int = 6  # TIR: teacher rounds per trace at most (a code cell run between two rounds)

    def rounds(self) -> list[int]:
        """The `n` of each successive request for one question x thought."""
        size = self.per_request or (min(self.until_correct, self.samples) if self.until_correct else self.samples)
        return [min(size, self.samples - s) for s in range(0, self.samples, size)]


def ledger_path(out: str | os.PathLike) -> Path:
    return Path(out).with_suffix(".ledger.json")


def request_key(teacher: str, item: Record, prompt: Prompt, request: Request, round_: int) -> str:
    """Everything that shapes the answer: a changed prompt, model or setting is a new request.
    (The messages are the prompt's, whose hash covers them, plus the question.)"""
    content = [teacher, item.id, round_, prompt.hash, item.question, request.n, request.temperature,
               request.top_p, request.max_tokens] + ([request.logprobs] if request.logprobs else [])
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:24]


@dataclass
class Job:
    item: Record
    thought: str
    key: str
    first_sample: int
    completions: list[Completion]
    done: asyncio.Future[int]  # resolves to the number of correct samples
    meta: list[dict[str, Any]] | None = None  # per sample, kept in its record (TIR: the turns and rounds)


class Validator:
    """Checks answered requests in batches off the event loop and writes their records."""

    def __init__(self, thoughts: Sequence[str], prompts: dict[str, Prompt], teacher: str, settings: Settings,
                 journal: Journal, out: TextIO, stats: Stats, timeout: float, workers: int | None):
        self.checkers: dict[str, Checker] = {}  # opened by `run`, while the first requests are in flight
        self.thoughts, self.timeout, self.workers = thoughts, timeout, workers
        self.lock, self.closed = threading.Lock(), False
        self.prompts, self.teacher, self.settings = prompts, teacher, settings
        self.journal, self.out, self.stats = journal, out, stats
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=4 * VALIDATE_BATCH)

    def open(self) -> None:
        """Open the checkers (PoT starts the sandbox pool: about half a second). Runs in a thread that
        a cancelled run does not stop, hence the lock: what opens after `close` is closed at once."""
        for thought in self.thoughts:
            checker = Checker(thought, timeout=self.timeout, workers=self.workers)
            with self.lock:
                if self.closed:
                    checker.close()
                    return
                self.checkers[thought] = checker

    async def run(self) -> None:
        await asyncio.to_thread(self.open)
        while (job := await self.queue.get()) is not None:
            batch = [job]
            while len(batch) < VALIDATE_BATCH and not self.queue.empty():
                nxt = self.queue.get_nowait()
                if nxt is None:
                    self.queue.put_nowait(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            checked = await asyncio.to_thread(self._check, batch)
            # Writes stay on the event loop thread, the only writer of the output and journal.
            for job, (recs, lines) in zip(batch, checked):
                self.out.write(lines)  # one write per request: its records land together
                self.out.flush()
                self.stats.written += lines.count("\n")
                if not any(is_transient(c.error) for c in job.completions):
                    self.journal.record_written(job.key)
                for r in recs:
                    self.stats.samples[job.thought] += 1
                    self.stats.correct[job.thought] += bool(r.correct)
                    if r.status != "ok":
                        self.stats.failures[r.status] += 1
                job.done.set_result(sum(bool(r.correct) for r in recs))

    def _check(self, batch: list[Job]) -> list[tuple[list[Record], str]]:
        """(In a worker thread.) Extract and check every usable sample: the records of each job,
        and the JSON lines of those to keep."""
        todo: dict[str, list[tuple[Job, int, str]]] = {}
        for job in batch:
            for i, c in enumerate(job.completions):
                if c.error is None and c.text is not None:
                    todo.setdefault(job.thought, []).append((job, i, extract_rationale(job.thought, c.text)))
        checked: dict[tuple[int, int], tuple[str, Any]] = {}
        for thought, items in todo.items():
            outcomes = self.checkers[thought].check([r for *_, r in items])
            graded = grade_many(outcomes, [j.item.answer for j, *_ in items], [latex_answers(j.item) for j, *_ in items])
            for (job, i, rationale), g in zip(items, graded):
                checked[id(job), i] = (rationale, g)
        out = []
        for job in batch:
            recs = [self._record(job, i, c, *checked.get((id(job), i), (None, None))) for i, c in enumerate(job.completions)]
            keep = [r for r in recs if self.settings.keep == "all" or r.correct]
            out.append((recs, "".join(dumps({f: getattr(r, f) for f in RECORD_FIELDS}) + "\n" for r in keep)))
        return out

    def _record(self, job: Job, i: int, c: Completion, rationale: str | None, outcome: Any) -> Record:
        item = job.item
        if outcome is not None:  # a solvers.grading.Graded
            status, prediction, correct = outcome.status, outcome.prediction, outcome.correct
        else:
            status, prediction = c.error or "malformed", None
            correct = None if item.answer is None else False
        return Record(
            id=item.id, question=item.question, answer=item.answer, source=item.source, thought=job.thought,
            rationale=rationale, prediction=prediction, status=status, correct=correct, model=self.teacher,
            sample=job.first_sample + i, request=job.key, prompt_hash=self.prompts[job.thought].hash,
            meta={**carried_meta(item), "raw": c.text,
                  "finish_reason": c.finish_reason,
                  "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}}
                 | ({META_KEY: c.logprobs} if c.logprobs else {}) | (job.meta[i] if job.meta else {}),
        )

    def close(self) -> None:
        with self.lock:
            self.closed = True
            checkers = list(self.checkers.values())
        for checker in checkers:
            checker.close()


class Run:
    """One generation run: the workers that talk to the teacher, and their shared state."""

    def __init__(self, items: Sequence[Record], thoughts: Sequence[str], teacher: Teacher, out: Path,
                 prompts: dict[str, Prompt], settings: Settings, ledger: Ledger, journal: Journal):
        self.items, self.thoughts, self.teacher, self.out = items, thoughts, teacher, out
        self.prompts, self.settings, self.ledger, self.journal = prompts, settings, ledger, journal
        self.stats = Stats(requests=len(items) * len(thoughts) * len(settings.rounds()))
        self.validator: Validator | None = None
        self.rounds: Rounds | None = None  # TIR rounds (opened by `main` when a thought runs code)
        self.prior_correct: Counter[tuple[str, str]] = Counter()

    async def ask(self, item: Record, thought: str) -> None:
        """All rounds of one question x thought."""
        settings, stats, prompt = self.settings, self.stats, self.prompts[thought]
        assert self.validator is not None
        correct, first = self.prior_correct[item.id, thought], 0
        rounds = settings.rounds()
        for r, n in enumerate(rounds):
            if settings.until_correct and correct >= settings.until_correct:
                stats.done += len(rounds) - r
                return
            tools = uses_tools(thought)
            request = Request(
                prompt.messages(item.question), n, settings.temperature, settings.top_p, settings.max_tokens,
                tool_stop(prompt.stop) if tools else list(prompt.stop) or None, settings.logprobs,
                meta={"id": item.id, "question": item.question, "thought": thought, "answer": item.answer, "round": r},
            )
            key = request_key(self.teacher.name, item, prompt, request, r)
            job_key = trace_key(key, settings.max_rounds) if tools else key
            if job_key in self.journal.written:
                stats.done += 1
                stats.resumed += 1
                first += n
                continue
            meta = None
            if tools:
                assert self.rounds is not None
                traces, sent = await self.rounds.traces(request, key, self._answer)
                completions, meta = [t.completion for t in traces], [t.meta() for t in traces]
            else:
                completions, sent = await self._answer(key, request)
            stats.resumed += not sent
            job = Job(item, thought, job_key, first, completions, asyncio.get_running_loop().create_future(), meta)
            await self.validator.queue.put(job)
            stats.done += 1
            first += n
            if settings.until_correct:
                correct += await job.done

    async def _answer(self, key: str, request: Request) -> tuple[list[Completion], bool]:
        """The teacher's answer to one request (one round of a TIR trace), from the journal if an
        earlier run received it; paid and counted when asked now."""
        completions, sent = await self.journal.answer(key, lambda: self.teacher.complete(request))
        if sent:
            self.stats.called += 1
            self.ledger.paid(completions)
        return completions, sent

    async def main(self, concurrency: int, timeout: float, workers: int | None, show_progress: bool) -> None:
        kept = self.journal.load()
        for completions in self.journal.answered.values():
            self.ledger.resumed(completions)
        hashes = {t: p.hash for t, p in self.prompts.items()}
        self.prior_correct = Counter(
            (r.id, r.thought) for r in kept
            if r.correct and r.model == self.teacher.name and r.prompt_hash == hashes.get(r.thought)
        )
        self.journal.open()
        todo: asyncio.Queue[tuple[Record, str]] = asyncio.Queue()
        for item in self.items:
            for thought in self.thoughts:
                todo.put_nowait((item, thought))

        async def worker() -> None:
            while not todo.empty():
                await self.ask(*todo.get_nowait())

        with open(self.out, "a", encoding="utf-8") as out:
            self.validator = Validator(self.thoughts, self.prompts, self.teacher.name, self.settings, self.journal,
                                       out, self.stats, timeout, workers)
            checking = asyncio.create_task(self.validator.run())
            if any(map(uses_tools, self.thoughts)):
                self.rounds = Rounds(self.settings.max_rounds, TIR_TIME_FACTOR * timeout, workers)
            try:
                async with live_table(lambda: stats_table(self), enabled=show_progress, line=lambda: stats_line(self)):
                    workers_done = asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
                    try:
                        await asyncio.wait({workers_done, checking}, return_when=asyncio.FIRST_COMPLETED)
                        if checking.done():  # the validator stops early only on an error: stop asking
                            checking.result()
                            raise RuntimeError("the validator stopped before the requests were done")
                        await workers_done
                    except BaseException:
                        workers_done.cancel()
                        workers_done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
                        raise
                    await self.validator.queue.put(None)
                    await checking
            finally:
                checking.cancel()
                self.validator.close()
                if self.rounds is not None:
                    self.rounds.close()
                self.journal.close()


def stats_line(run: Run) -> str:
    s = run.stats
    kept = sum(s.correct.values())
    return (f"generate: {s.done}/{s.requests} requests ({s.called} sent), {kept}/{sum(s.samples.values())} kept, "
            f"{s.elapsed:.0f} s, {eta(s.done - s.resumed, s.requests - s.resumed, s.elapsed)}")


def stats_table(run: Run) -> Table:
    """Done/total, rates, tokens, cost, kept rate by thought and errors by class."""
    s, ledger = run.stats, run.ledger
    table = Table(title=f"distill generate  {run.teacher.name}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("requests", f"{s.done}/{s.requests} done  ({s.called} sent, {s.resumed} from the journal)")
    table.add_row("rate", f"{s.called / max(s.elapsed, 1e-9):.1f} requests/s over {s.elapsed:.1f}s, "
                          f"{eta(s.done - s.resumed, s.requests - s.resumed, s.elapsed)}")
    table.add_row("tokens", usage_text(ledger, ledger.run))
    for thought in run.thoughts:
        table.add_row(f"kept {thought}", f"{s.correct[thought]}/{s.samples[thought]} = {s.kept_rate(thought):.1%}")
    retries = getattr(run.teacher, "retries", Counter())
    if retries:
        table.add_row("retried", ", ".join(f"{k} {v}" for k, v in retries.most_common()))
    if s.failures:
        table.add_row("failed samples", ", ".join(f"{k} {v}" for k, v in s.failures.most_common()))
    if (status := getattr(run.teacher, "status", None)) and (text := status()):
        table.add_row("servers", text)  # a teacher over several servers: requests and health per server
    return table


async def agenerate(
    items: Sequence[Record],
    thoughts: Sequence[str],
    teacher: Teacher,
    out: str | os.PathLike,
    *,
    prompts: dict[str, Prompt] | None = None,
    settings: Settings | None = None,
    concurrency: int = 16,
    overwrite: bool = False,
    price: Price | None = None,
    timeout: float = 5.0,
    workers: int | None = None,
    show_progress: bool = False,
) -> Result:
    """`generate` for callers that already run an event loop (the teacher is not closed here)."""
    out = Path(out)
    thoughts = parse_thoughts(thoughts)
    settings = settings or Settings()
    if settings.keep not in ("all", "correct"):
        raise InputError(f"--keep must be all or correct, not {settings.keep!r}")
    if settings.logprobs < 0:
        raise InputError(f"--logprobs must be >= 0, not {settings.logprobs}")
    if settings.samples < 1 or (settings.per_request or 1) < 1 or (settings.until_correct or 1) < 1:
        raise InputError("--samples, --n-per-request and --max-samples-until-correct must be at least 1")
    if settings.max_rounds < 1:
        raise InputError(f"--max-rounds must be at least 1, not {settings.max_rounds}")
    if settings.logprobs and any(map(uses_tools, thoughts)):
        raise InputError("--logprobs is not supported for tir (its traces hold outputs the teacher did not write)")
    if overwrite:
        remove_run(out)
        ledger_path(out).unlink(missing_ok=True)
    journal = Journal(out)
    if out.exists() and not journal.path.exists():
        raise InputError("output exists but no journal of a run to resume; pass --overwrite to replace it", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.start(teacher.name, price)
    run = Run(items, list(thoughts), teacher, out, prompts or load_prompts(list(thoughts)), settings, ledger, journal)
    try:
        await run.main(concurrency, timeout, workers, show_progress)
    except TeacherError as exc:
        raise InputError(str(exc)) from None
    finally:
        ledger.save(ledger_path(out))
    return Result(out, run.stats, ledger, Counter(getattr(teacher, "retries", Counter())))


def generate(
    data: str | Sequence[Record],
    thoughts: str | Sequence[str],
    teacher: str | Teacher,
    out: str | os.PathLike,
    *,
    limit: int | None = None,
    shard: str | None = None,
    prompt_files: Sequence[str | os.PathLike] = (),
    prices: str | os.PathLike | None = None,
    teacher_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Result:
    """Generate validated rationales for a data set (spec like `gsm8k:train`, or records) with a
    teacher (spec like `openai:gpt-4o-mini`, or a `Teacher`) into `out`, resuming an earlier run
    into the same file. Keyword arguments go to `agenerate` (settings, concurrency, overwrite, ...)."""
    thoughts = parse_thoughts(thoughts)
    prompts = load_prompts(thoughts, list(prompt_files), prompt_set(data) if isinstance(data, str) else {})
    dataset = load(data, limit=limit, shard=shard) if isinstance(data, str) else None
    items = dataset.records if dataset is not None else list(data)
    kwargs.setdefault("prompts", prompts)

    async def main() -> Result:
        try:
            built = make_teacher(teacher, **(teacher_options or {})) if isinstance(teacher, str) else teacher
        except TeacherError as exc:
            raise InputError(str(exc)) from None
        kwargs.setdefault("price", find_price(built.name, prices))
        try:
            result = await agenerate(items, thoughts, built, out, **kwargs)
            result.skipped = list(dataset.skipped) if dataset is not None else []
            return result
        finally:
            if isinstance(teacher, str):
                await built.aclose()

    return asyncio.run(main())

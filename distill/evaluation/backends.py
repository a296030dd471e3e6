"""Decoders: a student through HF transformers or vLLM, or a teacher backend; `open_decoder` picks one.

Greedy decoding of the T5 and LLaMA families runs `graphs.GreedyLoop` over the batches of
`plan.plan_batches`, each bucket's batches as one continuously refilled batch (`GreedyLoop.stream`);
other models, and sampling, go through `generate` with its dynamic cache.
Prompts of a thought that runs code as it goes (`tir`) are `tools.ToolPrompt`s: every decoder
stops them at the marker, runs their cells in the sandbox and resumes (`tools`), and yields a
`tools.Trace` (text and rounds) for each of their samples.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.cues import student_input
from distill.evaluation import decode_attention
from distill.evaluation.graphs import GreedyLoop, cuda_graph
from distill.evaluation.plan import Batch, memory_token_budget, plan_batches, prefill_cost, step_cost
from distill.evaluation.tools import OUTPUT_TOKENS, Said, ToolPrompt, ToolSession, generate_rounds, text_rounds
from distill.records import InputError
from distill.students import StudentSettings, format_prompt, load_student
from distill.thoughts import get_thought, thought_names
from solvers.tir import STOP


@dataclass
class DecodeOptions:
    max_new_tokens: int = 256
    samples: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    token_budget: int | None = None  # KV-cache tokens per batch; None: from free memory (CUDA) or plan.CPU_TOKEN_BUDGET
    max_batch: int = 1024  # sequences per batch at most (samples count)
    pad_multiple: int = 16
    loop: str = "auto"  # "static": GreedyLoop; "generate": HF generate; "auto": GreedyLoop where it applies
    compile: bool = True  # capture GreedyLoop's decode step in CUDA graphs (on CUDA)
    attention: str = "auto"  # GreedyLoop's step: "kernel" (decode_attention's Triton kernel), "torch" (SDPA), "auto"
    continuous: bool = True  # GreedyLoop: a row whose sequence ended takes its bucket's next prompt (plain prompts)
    expected_new_tokens: float | None = None  # with continuous: the mean new tokens the plan assumes (None: all;
    # `plan._shape_cost`: one tail per bucket and the prefill counted, so fewer buckets where sequences end early)
    force_new_tokens: bool = False  # ignore EOS (benchmarks: a fixed amount of work)
    max_rounds: int = 4  # tool-integrated thoughts: decoding rounds per sample (cells run between them)
    output_tokens: int = OUTPUT_TOKENS  # tokens of a cell's output fed back at most
    cell_timeout: float = 5.0  # seconds for a sample's cells to run (all of them again, each round)
    cell_workers: int | None = None  # sandbox processes for the cells (default: one per core)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError("samples must be at least 1")
        if self.max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError("several samples need a temperature above 0 (greedy decoding repeats itself)")
        if self.loop not in ("auto", "static", "generate"):
            raise ValueError(f"loop must be auto, static or generate, got {self.loop!r}")
        if self.expected_new_tokens is not None and not 0 < self.expected_new_tokens:
            raise ValueError(f"expected_new_tokens must be above 0, got {self.expected_new_tokens}")
        if self.attention not in ("auto", "kernel", "torch"):
            raise ValueError(f"attention must be auto, kernel or torch, got {self.attention!r}")


def rationale_extractor() -> Callable[[str, str], str]:
    """`extract_rationale(thought, raw)` of the teacher backends, so that teacher and student outputs
    go through one function; the stripped text where the backends are not installed."""
    try:
        from distill.teachers.extract import extract_rationale
    except ImportError:
        return lambda thought, raw: raw.strip()
    return extract_rationale


class HFDecoder:
    """Decodes with `GreedyLoop` where it applies (greedy, one sample, a T5 or LLaMA model; see
    `DecodeOptions.loop`), else with `model.generate`; yields results batch by batch so callers can
    check and save early."""

    def __init__(self, model: Any, tokenizer: Any, settings: StudentSettings, options: DecodeOptions,
                 script: Any = None):
        """`script` (`script.Script`, `script.Lengths`): forced tokens, for benchmarks and tests; its
        sequences are the prompts' indices in `decode` (a tool-integrated batch: its rows)."""
        self.model, self.tokenizer, self.settings, self.options, self.script = model, tokenizer, settings, options, script
        self.causal = settings.kind == "causal"
        if self.causal:  # generation continues the prompt: pad and truncate on the left
            tokenizer.padding_side = tokenizer.truncation_side = "left"
        self.prompting: dict[str, Any] = {"cues": settings.cues, "format": settings.prompt_format}
        fits = options.temperature <= 0 and options.samples == 1 and GreedyLoop.supports(model)
        if options.loop == "static" and not fits:
            raise InputError("the static loop decodes greedily, one sample, T5 and LLaMA models only")
        self.loop: GreedyLoop | None = None
        if options.loop == "static" or (options.loop == "auto" and fits):
            graphs = options.compile and model.device.type == "cuda"
            if options.attention == "kernel" and not decode_attention.runs(model.device):
                raise InputError("attention 'kernel' needs Triton and a CUDA model (or TRITON_INTERPRET=1)")
            self.loop = GreedyLoop(model, max_new_tokens=options.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                   force_new_tokens=options.force_new_tokens, capture=cuda_graph if graphs else None,
                                   hook=script, fused={"auto": None, "kernel": True, "torch": False}[options.attention])

    def prompt(self, question: str, thought: str) -> str:
        text = format_prompt(self.tokenizer, student_input(question, thought, self.settings.cues), self.settings)
        return ToolPrompt(text) if get_thought(thought).tools else text

    def session(self) -> ToolSession:
        o = self.options
        return ToolSession(self.tokenizer, max_new_tokens=o.max_new_tokens, max_rounds=o.max_rounds,
                           output_tokens=o.output_tokens, timeout=o.cell_timeout, workers=o.cell_workers)

    def _generate_kwargs(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {"max_new_tokens": o.max_new_tokens, "num_return_sequences": o.samples,
                              "pad_token_id": self.tokenizer.pad_token_id}
        kw.update(do_sample=True, temperature=o.temperature, top_p=o.top_p) if o.temperature > 0 else kw.update(do_sample=False)
        if o.force_new_tokens:
            kw["min_new_tokens"] = o.max_new_tokens
        return kw

    def plan(self, prompts: Sequence[str]) -> list[Batch]:
        """Batches of plain prompts, then of tool-integrated ones (their cache also holds the outputs)."""
        o = self.options
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=True,
                                                      max_length=self.settings.max_source_len)["input_ids"]]
        budget = o.token_budget or memory_token_budget(self.model)
        batches = []
        for tools in (False, True):
            group = [i for i, p in enumerate(prompts) if isinstance(p, ToolPrompt) == tools]
            new = o.max_new_tokens + ((o.max_rounds - 1) * o.output_tokens if tools else 0)
            batches += [Batch([group[j] for j in b.indices], b.capacity, b.length)
                        for b in plan_batches([lengths[i] for i in group], max_new_tokens=new, samples=o.samples,
                                              token_budget=budget, max_batch=o.max_batch, pad_multiple=o.pad_multiple,
                                              step_cost=step_cost(self.model), **self._continuous_plan(tools))]
        return batches

    def _continuous_plan(self, tools: bool) -> dict[str, float]:
        """`plan_batches`' continuous-batching model, where it applies and a mean length is given."""
        o = self.options
        if tools or o.expected_new_tokens is None or not (self.loop is not None and o.continuous):
            return {}
        return {"expected": o.expected_new_tokens, "prefill": prefill_cost(self.model)}

    def decode(self, prompts: Sequence[str], batches: Sequence[Batch] | None = None) -> Iterator[tuple[list[int], list[list[Any]]]]:
        """(prompt indices, their `samples` texts each) per batch; a `Trace` for each sample of a
        tool-integrated prompt."""
        import torch

        torch.manual_seed(self.options.seed)
        kwargs = self._generate_kwargs()
        n = self.options.samples
        session: ToolSession | None = None
        try:
            for run in self._runs(prompts, batches if batches is not None else self.plan(prompts)):
                if self._streams(prompts, run[0]):
                    yield from self._decode_stream(prompts, run)
                    continue
                batch = run[0]
                indices = batch.indices
                if self.loop is not None:  # one shape per bucket: pad the batch with copies, dropped below
                    indices = indices + indices[-1:] * (batch.capacity - len(indices))
                enc = self._encode(prompts, indices, batch.length)
                tools = [isinstance(prompts[i], ToolPrompt) for i in batch.indices for _ in range(n)]
                if any(tools):
                    session = session or self.session()
                    samples = self._decode_tools(enc, kwargs, session, tools)
                else:
                    samples = self._decode_plain(enc, kwargs, [i for i in indices for _ in range(n)])
                yield batch.indices, [samples[j * n:(j + 1) * n] for j in range(len(batch.indices))]
        finally:
            if self.loop is not None:
                self.loop.state = None  # free the static cache and its graphs
            if session is not None:
                session.close()

    def _streams(self, prompts: Sequence[Any], batch: Batch) -> bool:
        """Whether the batch goes through continuous batching: the static loop, plain prompts."""
        return (self.loop is not None and self.options.continuous
                and not any(isinstance(prompts[i], ToolPrompt) for i in batch.indices))

    def _runs(self, prompts: Sequence[Any], batches: Sequence[Batch]) -> list[list[Batch]]:
        """The batches in order, one run each; with continuous batching, consecutive batches of plain
        prompts with one shape (a bucket) form one run."""
        runs: list[list[Batch]] = []
        for b in batches:
            last = runs[-1][-1] if runs else None
            if (last is not None and self._streams(prompts, b) and self._streams(prompts, last)
                    and (last.capacity, last.length) == (b.capacity, b.length)):
                runs[-1].append(b)
            else:
                runs.append([b])
        return runs

    def _encode(self, prompts: Sequence[Any], indices: list[int], length: int) -> Any:
        return self.tokenizer([prompts[i] for i in indices], padding="max_length", truncation=True, return_tensors="pt",
                              max_length=min(length, self.settings.max_source_len)).to(self.model.device)

    def _decode_stream(self, prompts: Sequence[Any], run: list[Batch]) -> Iterator[tuple[list[int], list[list[Any]]]]:
        """A bucket's batches as one continuously refilled batch (`GreedyLoop.stream`); yields about a
        batch of prompts at a time, in the order their sequences end."""
        import torch

        assert self.loop is not None
        indices = [i for b in run for i in b.indices]
        enc = self._encode(prompts, indices, run[0].length)
        done: list[int] = []
        tokens: list[Any] = []

        def texts() -> list[list[str]]:
            return [[t] for t in self.tokenizer.batch_decode(torch.cat(tokens), skip_special_tokens=True)]

        stream = self.loop.stream(enc["input_ids"], enc["attention_mask"], run[0].capacity, items=indices)
        with contextlib.closing(_in_background(stream, self.model.device)) as made:  # closed here, not by the GC
            for numbers, out in made:
                done += numbers
                tokens.append(out)
                if len(done) >= run[0].capacity:
                    yield done, texts()
                    done, tokens = [], []
        if done:
            yield done, texts()

    def _decode_plain(self, enc: Any, kwargs: dict[str, Any], rows: list[int]) -> list[str]:
        """`rows`: the prompt index of each sequence (the script's sequence numbers)."""
        import torch

        if self.loop is not None:
            out = self.loop(enc["input_ids"], enc["attention_mask"], torch.tensor(rows, device=self.model.device))
        else:
            if self.script is not None:  # one round, from the start
                process, on_round = self.script.processor()
                on_round(rows, [0] * len(rows), enc["input_ids"].shape[1] if self.causal else 1)
                kwargs = {**kwargs, "logits_processor": [process]}
            with torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
            if self.causal:
                out = out[:, enc["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)

    def _decode_tools(self, enc: Any, kwargs: dict[str, Any], session: ToolSession, tools: list[bool]) -> list[Any]:
        """Tool-integrated decoding of a batch (rows of plain prompts decode as usual in it)."""
        n = self.options.samples
        tools += [False] * (enc["input_ids"].shape[0] * n - len(tools))  # the loop's padding copies
        if self.loop is not None:
            tokens, rows = self.loop.tools(enc["input_ids"], enc["attention_mask"], session, tools)
        else:
            enc = {k: v.repeat_interleave(n, 0) for k, v in enc.items()}
            extra: dict[str, Any] = {}
            if self.script is not None:
                process, extra["on_round"] = self.script.processor()
                kwargs = {**kwargs, "logits_processor": [process]}
            eos = self.model.generation_config.eos_token_id
            tokens, rows = generate_rounds(self.model, enc, {**kwargs, "num_return_sequences": 1}, session, tools,
                                           causal=self.causal, eos=[eos] if isinstance(eos, int) else list(eos or []),
                                           pad=self.tokenizer.pad_token_id, **extra)
        return [rows.trace(r, tokens[r], session.decode) if tools[r] else session.decode(tokens[r])
                for r in range(len(tokens))]


def _in_background(items: Generator[Any, None, None], device: Any) -> Iterator[Any]:
    """A generator's `items`, made ahead in a thread of their own (on `device`, CUDA's current device
    being per thread): while the caller works on one (detokenising, checking answers, writing), the
    thread keeps the GPU's queue of decode steps filled. Its exceptions are raised here; a caller that
    stops early stops it, and it has finished before this returns."""
    import queue
    import threading

    import torch

    done, stop = object(), threading.Event()
    ready: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
                for item in items:
                    ready.put((item, None))
                    if stop.is_set():
                        break
            ready.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            ready.put((done, exc))
        finally:
            items.close()

    thread = threading.Thread(target=run, name="distill-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = ready.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class VllmDecoder:
    """Causal models through vLLM (when installed, on CUDA): it schedules batches and the KV cache itself;
    prompts go to it in chunks only so that results are saved as they come. Tool-integrated prompts
    stop at the marker and go on in rounds (`tools.text_rounds`): the prompt extended by the trace
    and its output, which vLLM's prefix cache serves. vLLM is not installed where the tests run:
    this path is untested here."""

    CHUNK = 2048

    def __init__(self, path: str, tokenizer: Any, settings: StudentSettings, options: DecodeOptions):
        from vllm import LLM

        self.tokenizer, self.settings, self.options = tokenizer, settings, options
        self.prompting: dict[str, Any] = {"cues": settings.cues, "format": settings.prompt_format}
        self.llm = LLM(model=path, dtype="bfloat16", seed=options.seed)
        self.params = self._params(options.samples, options.max_new_tokens)
        self.tool_params = self._params(options.samples, options.max_new_tokens, stop=[STOP])

    def _params(self, n: int, tokens: int, stop: list[str] | None = None) -> Any:
        from vllm import SamplingParams

        o = self.options
        return SamplingParams(n=n, temperature=o.temperature, top_p=o.top_p, max_tokens=tokens,
                              min_tokens=tokens if o.force_new_tokens else 0, ignore_eos=o.force_new_tokens,
                              stop=stop, include_stop_str_in_output=bool(stop))

    prompt = HFDecoder.prompt

    def plan(self, prompts: Sequence[Any]) -> list[Batch]:
        return _chunks(len(prompts), self.CHUNK)

    def _said(self, c: Any) -> Said:
        return Said(c.text, c.finish_reason == "stop" and c.stop_reason == STOP, len(c.token_ids))

    def decode(self, prompts: Sequence[str], batches: Sequence[Batch] | None = None) -> Iterator[tuple[list[int], list[list[Any]]]]:
        session: ToolSession | None = None
        try:
            for batch in batches if batches is not None else self.plan(prompts):
                texts = [prompts[i] for i in batch.indices]
                tools = [isinstance(p, ToolPrompt) for p in texts]
                outs = self.llm.generate(texts, [self.tool_params if t else self.params for t in tools], use_tqdm=False)
                samples: list[list[Any]] = [[c.text for c in o.outputs] for o in outs]
                if any(tools):
                    o = self.options
                    session = session or ToolSession(self.tokenizer, max_new_tokens=o.max_new_tokens, max_rounds=o.max_rounds,
                                                     timeout=o.cell_timeout, workers=o.cell_workers)
                    first = {(j, s): self._said(c) for j, out in enumerate(outs) if tools[j] for s, c in enumerate(out.outputs)}

                    def more(asks: list[tuple[Any, str, int]]) -> list[Said]:
                        params = [self._params(1, left, stop=[STOP]) for _, _, left in asks]
                        done = self.llm.generate([texts[j] + prefix for (j, _), prefix, _ in asks], params, use_tqdm=False)
                        return [self._said(d.outputs[0]) for d in done]

                    for (j, s), trace in text_rounds(first, more, session).items():
                        samples[j][s] = trace
                yield batch.indices, samples
        finally:
            if session is not None:
                session.close()


def _chunks(n: int, size: int) -> list[Batch]:
    return [Batch(list(range(s, min(s + size, n))), size, 0) for s in range(0, n, size)]


class TeacherDecoder:
    """A teacher backend of `distill generate` (`openai:MODEL`, ...) with its few-shot prompts
    (`prompts/<thought>.yaml`), so that the teacher is measured exactly as students are."""

    CHUNK = 256  # requests in flight per saved batch

    def __init__(self, spec: str, options: DecodeOptions):
        from distill.teachers import TeacherError, make_teacher
        from distill.teachers.prompts import load_prompts

        try:
            self.teacher = make_teacher(spec)
        except TeacherError as exc:
            raise InputError(str(exc)) from None
        self.options = options
        self.prompts = load_prompts(thought_names())
        self.prompting: dict[str, Any] = {t: p.hash for t, p in self.prompts.items()}
        self.loop = asyncio.new_event_loop()  # one loop: clients may hold connections bound to it

    def prompt(self, question: str, thought: str) -> Any:
        from distill.teachers import Request

        p, o = self.prompts[thought], self.options
        return Request(p.messages(question), o.samples, o.temperature, o.top_p, o.max_new_tokens,
                       list(p.stop) or None, meta={"question": question, "thought": thought})

    def plan(self, prompts: Sequence[Any]) -> list[Batch]:
        return _chunks(len(prompts), self.CHUNK)

    def _complete(self, requests: list[Any]) -> list[list[Any]]:
        from distill.teachers.base import is_transient

        async def answers() -> list[list[Any]]:  # gathered inside this decoder's own loop
            return await asyncio.gather(*map(self.teacher.complete, requests))

        results = self.loop.run_until_complete(answers())
        for completions in results:
            failed = next((c.error for c in completions if is_transient(c.error)), None)
            if failed:  # not answered: stop here, a rerun resumes and asks again
                raise InputError(f"teacher {self.teacher.name}: {failed}; rerun to resume")
        return results

    def decode(self, prompts: Sequence[Any], batches: Sequence[Batch] | None = None) -> Iterator[tuple[list[int], list[list[Any]]]]:
        session: ToolSession | None = None
        try:
            for batch in batches if batches is not None else self.plan(prompts):
                requests = [prompts[i] for i in batch.indices]
                results = self._complete(requests)
                samples: list[list[Any]] = [[c.text or "" for c in cs] for cs in results]
                if any(get_thought(r.meta["thought"]).tools for r in requests):
                    session = session or ToolSession(None, max_new_tokens=self.options.max_new_tokens,
                                                     max_rounds=self.options.max_rounds, timeout=self.options.cell_timeout,
                                                     workers=self.options.cell_workers)
                    self._rounds(requests, results, samples, session)
                yield batch.indices, samples
        finally:
            self.loop.run_until_complete(self.teacher.aclose())
            if session is not None:
                session.close()

    def _rounds(self, requests: list[Any], results: list[list[Any]], samples: list[list[Any]], session: ToolSession) -> None:
        """Tool-integrated samples in rounds (`tools.text_rounds`): the teacher continues the trace
        with its output through `Request.prefix`; their `samples` become `Trace`s."""
        from dataclasses import replace

        def said(c: Any) -> Said:
            return Said(c.text or "", c.text is not None and c.finish_reason != "length", c.completion_tokens)

        def more(asks: list[tuple[Any, str, int]]) -> list[Said]:
            done = self._complete([replace(requests[j], n=1, prefix=prefix, max_tokens=left) for (j, _), prefix, left in asks])
            return [said(c) for [c] in done]

        first = {(j, s): said(c) for j, r in enumerate(requests) if get_thought(r.meta["thought"]).tools
                 for s, c in enumerate(results[j])}
        for (j, s), trace in text_rounds(first, more, session).items():
            samples[j][s] = trace


def open_decoder(model: str, options: DecodeOptions, *, device: str | None = None, engine: str = "auto") -> Any:
    """The decoder for a teacher spec (`openai:MODEL`, ...), a student directory, a local model or a hub id.
    `engine`: `hf` (transformers), `vllm`, or `auto` (vLLM for causal models on CUDA when installed)."""
    from distill.teachers import TEACHERS

    kind, sep, _ = model.partition(":")
    if sep and kind in TEACHERS and not Path(model).exists():
        return TeacherDecoder(model, options)
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    lm, tokenizer, settings = load_student(model, dtype=dtype, device=device)
    has_vllm = importlib.util.find_spec("vllm") is not None
    if engine == "vllm" or (engine == "auto" and settings.kind == "causal" and device.startswith("cuda") and has_vllm):
        if settings.kind != "causal":
            raise InputError("--engine vllm serves causal models only")
        del lm  # vLLM loads its own copy
        return VllmDecoder(model, tokenizer, settings, options)
    return HFDecoder(lm, tokenizer, settings, options)

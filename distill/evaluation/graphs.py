"""Greedy decoding with static shapes (`GreedyLoop`), its decode step captured in CUDA graphs.

The step is bound by launch overhead and memory traffic, not FLOPs: a few graphs per bucket shape
replace the per-token launches, with no compiler.
"""
from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from distill.evaluation import decode_attention
from distill.evaluation.steps import LlamaStep, T5Step
from distill.evaluation.tools import WINDOW, Rows, ToolSession

SEGMENT = 64  # decode steps per CUDA graph: each graph attends only to the cache filled by its last step
CHECK = 2  # decode steps between looks at a tool-integrated batch (markers, finished rows)
REFILL_CHECK = 4  # decode steps between looks at a continuously refilled batch (`GreedyLoop.stream`)
REFILL_SHARE = 8  # it refills once 1/REFILL_SHARE of its rows are free (or the prompts left fit, or none is live)
REFILL_BYTES = 1 << 30  # bound on the scratch state of one chunk of a refill's prefill


def cuda_graph(fn: Callable[[], None], pool: Any) -> Callable[[], None]:
    """`fn` (already warmed up) captured in a CUDA graph; returns its replay.

    `torch.cuda.graph` empties the device and pinned-host memory caches before every capture, and the
    allocations after it pay for fresh cudaMalloc/cudaHostAlloc calls (the 770M shape's realistic run of
    `benchmarks/eval_gpu.py`, 8 captures: 15.6 s with it, 13.5-14.4 s with this, on H200 machines). So
    the capture goes ahead on the cache as it is, and only one that runs out of memory (during a capture
    the allocator cannot free cached blocks to make room) is captured again after emptying the device
    cache. Thread-local capture: the caller may decode in a thread while other threads work
    (`backends._in_background`)."""
    import torch

    graph, complete = _capture(fn, pool)
    if not complete:  # the failed graph stays referenced until the retry is done: its pool stays in use
        torch.cuda.empty_cache()
        graph, complete = _capture(fn, pool)
        if not complete:
            raise torch.cuda.OutOfMemoryError("a CUDA graph capture ran out of memory, on an emptied cache too")
    return graph.replay


def _capture(fn: Callable[[], None], pool: Any) -> tuple[Any, bool]:
    """(graph, False) when the capture ran out of memory: caught here, so that the frames of the failed
    attempt (its tensors in the pool) are gone before the caller empties the cache."""
    import torch

    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    complete = True
    with torch.cuda.stream(_capture_stream(torch.cuda.current_device())):
        graph.capture_begin(pool=pool, capture_error_mode="thread_local")
        try:
            fn()
        except torch.cuda.OutOfMemoryError:
            complete = False
        finally:
            graph.capture_end()
    return graph, complete


@functools.cache
def _capture_stream(device: int) -> Any:
    """One side stream per device for every capture (a capture cannot run on the default stream)."""
    import torch

    return torch.cuda.Stream(device)


class GreedyLoop:
    """Greedy decoding with static shapes for T5 and LLaMA models (`supports`): per bucket shape
    (batch, prompt length) one static KV cache; the prompt prefilled in chunks, eagerly; then the
    decode step, all in place on that state, in segments of SEGMENT steps, each attending to the
    cache slots filled by its last step. With `capture` (CUDA: `cuda_graph`) each segment's step is
    captured once per shape and replayed: the graphs of a batch shape serve all its batches.
    Output matches `generate(do_sample=False)` (with `min_new_tokens=max_new_tokens` when
    `force_new_tokens`), up to floating-point ties.

    Every row keeps its own count of new tokens (`st.n`: its cache slot and position): `tools`
    decodes tool-integrated rows (see `_Watch`), which stop at the marker and wait for their
    program while the others decode, then take its output's tokens one per step (forced instead
    of the argmax) and go on; the same tokens as `tools.generate_rounds`. `hook(st, logits)`, when
    set, rewrites the logits inside the step (benchmarks force scripted tokens: `script.Script`); it
    may read `st.item`, the number of the sequence each row holds (`items`; by default its row).

    `stream` decodes a whole bucket with continuous batching: a row whose sequence ended takes the
    bucket's next prompt, prefilled into that row alone while the others keep their state.

    Each row's cache has one slot more than it can fill: a finished row's steps write there (they go
    on writing the slot of its next token until it is refilled or the batch ends)."""

    STATE = ("tok", "out", "finished", "n", "gen", "fed")  # what a step writes besides the cache

    @staticmethod
    def supports(model: Any) -> bool:
        from transformers import LlamaForCausalLM, T5ForConditionalGeneration

        return isinstance(model, (T5ForConditionalGeneration, LlamaForCausalLM))

    def __init__(self, model: Any, *, max_new_tokens: int, pad_token_id: int, force_new_tokens: bool,
                 capture: Callable[[Callable[[], None], Any], Callable[[], None]] | None = None,
                 hook: Callable[[SimpleNamespace, Any], Any] | None = None, fused: bool | None = None):
        """`fused`: the step's attention by `decode_attention`'s kernel, and its residual adds with their norms,
        LLaMA's RoPE and SwiGLU by `decode_ops`' (None: where they run, i.e. CUDA)."""
        import torch
        from transformers import T5ForConditionalGeneration

        self.model, self.new, self.force, self.capture, self.hook = model, max_new_tokens, force_new_tokens, capture, hook
        fused = decode_attention.available(model.device) if fused is None else fused
        self.arch = (T5Step if isinstance(model, T5ForConditionalGeneration) else LlamaStep)(model, fused)
        eos = model.generation_config.eos_token_id
        self.eos = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=model.device)
        self.pad = pad_token_id
        self.state: SimpleNamespace | None = None
        self.shapes: list[tuple[int, int]] = []  # the batch shapes given a state, in order
        self.captured: list[tuple[int, int, int]] = []  # (batch, length, keys) of each captured step

    def _allocate(self, batch: int, length: int, cap: int, feed: int) -> SimpleNamespace:
        import torch

        m, arch = self.model, self.arch
        n = arch.cache_len(length, cap) + 1  # the last: a sink for finished rows
        cfg = m.config
        heads = getattr(arch, "kv_heads", arch.heads)
        dim = getattr(cfg, "head_dim", None) or getattr(cfg, "d_kv", None) or cfg.hidden_size // arch.heads
        layers = getattr(cfg, "num_decoder_layers", None) or cfg.num_hidden_layers
        empty = lambda: torch.zeros(batch, heads, n, dim, dtype=m.dtype, device=m.device)
        rows = lambda dtype=torch.long: torch.zeros(batch, dtype=dtype, device=m.device)
        st = SimpleNamespace(shape=(batch, length, cap, feed), cap=cap, steps={}, k=[empty() for _ in range(layers)],
                             tok=torch.zeros(batch, 1, dtype=torch.long, device=m.device),
                             out=torch.zeros(batch, cap + 1, dtype=torch.long, device=m.device),  # the last: a sink
                             n=rows(), gen=rows(), finished=rows(torch.bool), wait=rows(torch.bool), item=rows(),
                             feed=torch.zeros(batch, feed, dtype=torch.long, device=m.device), fed=rows(), fed_len=rows(),
                             pool=torch.cuda.graph_pool_handle() if self.capture is cuda_graph else None)
        st.v = [empty() for _ in st.k]
        arch.allocate(st, batch, length, cap)
        return st

    def _emit(self, st: SimpleNamespace, logits: Any) -> None:
        """Each row's next token from `logits` (a fed output token where the row takes one; EOS barred
        when forcing), kept where the row is neither finished nor waiting; in place, no host sync."""
        import torch

        if self.hook is not None:
            logits = self.hook(st, logits)
        if self.force and len(self.eos):
            logits = logits.index_fill(1, self.eos, float("-inf"))
        feeding = st.fed < st.fed_len
        fed = st.feed.gather(1, st.fed.clamp(max=st.feed.shape[1] - 1)[:, None])[:, 0]
        token = torch.where(feeding, fed, logits.argmax(-1))
        go = ~(st.finished | st.wait)
        st.out.scatter_(1, torch.where(go, st.n, st.cap)[:, None], token[:, None])
        st.tok.copy_(torch.where(go, token, st.tok[:, 0])[:, None])
        made = go & ~feeding
        st.gen += made
        st.fed += go & feeding
        st.n += go
        st.finished |= made & token[:, None].eq(self.eos).any(1) | st.gen.ge(self.new)

    def _step_fn(self, st: SimpleNamespace, keys: int) -> Callable[[], None]:
        def step() -> None:
            self._emit(st, self.arch.step(st, keys))

        if self.capture is None:
            return step
        if keys not in st.steps:  # warm up (on the side stream CUDA graphs want), undo its writes, capture
            import torch

            written = [getattr(st, name) for name in self.STATE]
            saved = [t.clone() for t in written]
            side = torch.cuda.Stream() if st.pool is not None else None
            if side is not None:
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    step()
                torch.cuda.current_stream().wait_stream(side)
            else:
                step()
            for t, value in zip(written, saved):
                t.copy_(value)
            st.steps[keys] = self.capture(step, st.pool)
            self.captured.append((*st.shape[:2], keys))
        return st.steps[keys]

    def _start(self, ids: Any, mask: Any, cap: int, feed: int, items: Any = None) -> tuple[SimpleNamespace, int]:
        """The state for this batch shape, reset and prefilled; the new tokens made so far (0 or 1).
        `items`: the sequence numbers of the rows (`st.item`; by default the rows' own)."""
        import torch

        shape = (ids.shape[0], ids.shape[1], cap, feed)
        if self.state is None or self.state.shape != shape:
            self.state = None  # free the last shape's cache and graphs first
            self.state = self._allocate(*shape)
            self.shapes.append(shape[:2])
        st = self.state
        for t in (st.n, st.gen, st.fed, st.fed_len, st.finished, st.wait):
            t.zero_()
        st.out.fill_(self.pad)
        st.item.copy_(torch.arange(ids.shape[0], device=ids.device) if items is None else items)
        first = self.arch.prefill(st, ids, mask)
        if first is not None:
            self._emit(st, first)
        return st, int(first is not None)

    def _steps(self, st: SimpleNamespace, length: int, made: int, steps: int) -> int:
        """Run `steps` decode steps; `made`: a bound on any row's new tokens before them (one more per
        step): the steps attend to the cache up to the end of that bound's segment."""
        upto = min(st.cap, made + steps)
        step = self._step_fn(st, self.arch.keys(length, min(st.cap, -(-upto // SEGMENT) * SEGMENT) - 1))
        for _ in range(steps):
            step()
        return upto

    def __call__(self, ids: Any, mask: Any, items: Any = None) -> Any:
        """New token ids [batch, max_new_tokens] (pad after EOS) for a padded prompt batch."""
        import torch

        with torch.inference_mode():
            st, made = self._start(ids, mask, self.new, 1, items)
            while made < self.new:
                made = self._steps(st, ids.shape[1], made, min(-(-(made + 1) // SEGMENT) * SEGMENT, self.new) - made)
                if not self.force and bool(st.finished.all()):
                    break
            return st.out[:, : self.new].clone()

    def stream(self, ids: Any, mask: Any, batch: int, items: Sequence[int] | None = None) -> Iterator[tuple[list[int], Any]]:
        """Continuous batching of one bucket: `ids`, `mask` [prompts, length] decoded `batch` rows at a
        time, a row whose sequence ended refilled with the next prompt at a check point (`_Stream`).
        Yields (sequence numbers: `items`, by default the prompts' own; their new token ids
        [k, max_new_tokens], pad after EOS, on the host) as sequences end: per prompt the same tokens
        as `__call__`, up to floating-point ties."""
        import torch

        numbers = list(range(ids.shape[0])) if items is None else [int(i) for i in items]
        first = list(range(min(batch, ids.shape[0])))
        rows = first + first[-1:] * (batch - len(first))  # a short bucket: copies, finished at once
        with torch.inference_mode():
            st, made = self._start(ids[rows], mask[rows], self.new, 1, self._device([numbers[j] for j in rows]))
            st.finished[len(first):] = True
            run = _Stream(self, st, ids, mask, numbers, made)
            while True:
                yield from run.look()
                run.refill()
                if not run.live():
                    break
                run.advance()
            yield from run.ready(block=True)

    def _device(self, values: list[int]) -> Any:
        """`values` on the model's device, copied without a sync (a plain copy would wait for the queued steps)."""
        import torch

        t = torch.tensor(values, dtype=torch.long)
        if self.model.device.type == "cuda":
            return t.pin_memory().to(self.model.device, non_blocking=True)
        return t

    def _refill(self, st: SimpleNamespace, rows: list[int], ids: Any, mask: Any, items: list[int]) -> None:
        """Prompts `ids` prefilled into the rows `rows` of the state, reset there; the other rows keep
        theirs. Chunks of rows are prefilled by the model family's own `prefill` into a scratch state of
        those rows alone (`_scratch`), copied into the rows through an index; a LLaMA row's first token
        is chosen by `_emit` with the other rows held (`wait`)."""
        import torch

        batch, length = st.shape[:2]
        if len(rows) == batch:  # all rows: in place, as a new batch
            self._start(ids, mask, st.cap, st.shape[3], self._device(items))
            return
        idx = self._device(rows)
        for t in (st.n, st.gen, st.fed, st.fed_len):
            t[idx] = 0
        st.finished[idx] = False
        st.out[idx] = self.pad
        st.item[idx] = self._device(items)
        per_row = length * sum(t[0, :, :1].numel() * t.element_size() for t in st.k + st.v)
        chunk = max(1, REFILL_BYTES // per_row)
        first = []
        for s in range(0, len(rows), chunk):
            part = idx[s:s + chunk]
            sub, names = self._scratch(st, part.shape[0])
            logits = self.arch.prefill(sub, ids[s:s + chunk], mask[s:s + chunk])
            for name in names:
                mine, theirs = getattr(sub, name), getattr(st, name)
                for src, dst in zip(mine, theirs) if isinstance(mine, list) else [(mine, theirs)]:
                    for dim, size in enumerate(src.shape[1:], 1):
                        dst = dst.narrow(dim, 0, size)
                    dst.index_copy_(0, part, src)
            if logits is not None:
                first.append(logits)
        if first:
            logits = torch.cat(first)
            full = logits.new_zeros(batch, logits.shape[1]).index_copy_(0, idx, logits)
            st.wait.fill_(True)
            st.wait[idx] = False
            self._emit(st, full)
            st.wait.fill_(False)

    def _scratch(self, st: SimpleNamespace, rows: int) -> tuple[SimpleNamespace, list[str]]:
        """A state of `rows` rows for the model family's `prefill` (the cache only over the slots it
        writes) and the names of what it holds per row: what the prefill writes."""
        import torch

        k = st.k[0]
        length, slots = st.shape[1], self.arch.cache_len(st.shape[1], 1)
        empty = lambda: torch.zeros(rows, k.shape[1], slots, k.shape[3], dtype=k.dtype, device=k.device)
        sub = SimpleNamespace(k=[empty() for _ in st.k], v=[empty() for _ in st.v],
                              tok=torch.zeros(rows, 1, dtype=torch.long, device=k.device))
        before = set(vars(sub))
        self.arch.allocate(sub, rows, length, st.cap)
        names = ["k", "v", "tok"] + [name for name in vars(sub) if name not in before]
        return sub, [name for name in names if _per_row(getattr(sub, name), rows)]

    def tools(self, ids: Any, mask: Any, session: ToolSession, tools: Sequence[bool]) -> tuple[list[list[int]], Rows]:
        """Tool-integrated decoding of a padded prompt batch (rows where `tools` is true stop at the
        marker): each row's new tokens (outputs included, EOS kept) and its `Rows` record."""
        import torch

        rows = Rows(tools)
        with torch.inference_mode():
            st, made = self._start(ids, mask, self.new + session.extra_tokens, session.output_tokens)
            watch = _Watch(st, session, rows)
            while True:
                watch.take_outputs()
                if watch.finished():
                    break
                if not watch.live():
                    watch.await_output()
                    continue
                made = watch.look(self._steps(st, ids.shape[1], made, CHECK), CHECK)
            out = st.out[:, : st.cap].cpu()
        return [out[r, : watch.ends[r]].tolist() for r in range(len(tools))], rows


LIVE, WAITING, DONE = "live", "waiting", "done"


class _Watch:
    """The host side of a tool-integrated batch in `GreedyLoop`. Every CHECK steps a snapshot of the
    rows (new tokens, finished) is copied to the host without a sync and read while the next steps
    run; a row found past the marker is set back to it (its steps since then are dropped: they only
    wrote cache slots it will write again), marked waiting (its steps change nothing) and its cells
    go to the sandbox in a thread; when their output is back it is fed to the row (`st.feed`) and
    the row goes on. A snapshot taken before a row's state was last changed is ignored for it."""

    def __init__(self, st: SimpleNamespace, session: ToolSession, rows: Rows):
        batch = st.n.shape[0]
        self.st, self.session, self.rows = st, session, rows
        self.state = [LIVE] * batch
        self.changed = [-1] * batch  # id of the last snapshot taken before the row's state was set
        self.scanned = [0] * batch  # new tokens already looked at for the marker
        self.ends: list[int] = [0] * batch
        self.taken = -1  # id of the last snapshot taken
        self.pending: tuple[int, Any, Any] | None = None  # (id, its tensors, its copy's event)
        self.outputs: deque[tuple[list[int], list[int], Future[Any]]] = deque()  # (rows, stops, sandbox run)

    def live(self) -> bool:
        return LIVE in self.state

    def finished(self) -> bool:
        return not self.outputs and all(s == DONE for s in self.state)

    def _device(self, values: list[int], dtype: Any = None) -> Any:
        import torch

        t = torch.tensor(values, dtype=dtype or torch.long)
        if self.st.n.is_cuda:
            return t.pin_memory().to(self.st.n.device, non_blocking=True)
        return t

    def look(self, made: int, steps: int) -> int:
        """Take a snapshot, read the previous one; returns the bound on new tokens, tightened."""
        import torch

        st = self.st
        tensors = [st.n, st.finished, st.out]
        if st.n.is_cuda:
            copies = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
            for c, t in zip(copies, tensors):
                c.copy_(t, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            copies, event = [t.clone() for t in tensors], None
        self.taken += 1
        previous, self.pending = self.pending, (self.taken, copies, event)
        if previous is None:
            return made
        return min(made, self._read(*previous) + steps)

    def _read(self, snap: int, copies: list[Any], event: Any) -> int:
        """Act on a snapshot: rows at the marker stop (run their cells or end), finished rows end.
        Returns the most new tokens of a row in it."""
        if event is not None:
            event.synchronize()
        n_t, finished_t, out = copies
        n, finished = n_t.tolist(), finished_t.tolist()
        ticks = self.session.ticks()
        ticked = ticks[out.numpy().clip(0, len(ticks) - 1)]
        stopped: list[tuple[int, int, list[str]]] = []
        ended: list[int] = []
        for r, state in enumerate(self.state):
            if state != LIVE or snap <= self.changed[r]:
                continue
            stop = None
            if self.rows.tools[r]:
                start = self.rows.start(r)
                low = max(start, self.scanned[r] + 1 - WINDOW)  # token indices from here on: the span looked at
                if ticked[r, low:n[r]].any():
                    stop = self.session.find_stop(out[r, low:n[r]].tolist(), 0, max(self.scanned[r], start) - low,
                                                  n[r] - low)
                self.scanned[r] = max(self.scanned[r], n[r])
            if stop is None:
                if finished[r]:
                    self._end(r, n[r])
                continue
            stop += low
            cells = self.session.cells(self.rows, r, out[r, :stop].tolist(), stop)
            if cells is None:
                self._end(r, stop)
                ended.append(r)
            else:
                stopped.append((r, stop, cells))
        st = self.st
        if ended:
            st.finished[self._device(ended)] = True
        if stopped:
            idx = self._device([r for r, _, _ in stopped])
            stops = [s for _, s, _ in stopped]
            st.n[idx] = self._device(stops)
            st.gen[idx] = self._device([s - self.rows.fed(r) for r, s, _ in stopped])
            st.tok[idx, 0] = st.out[idx, self._device(stops) - 1]
            st.finished[idx] = False
            st.wait[idx] = True
            for r, _, _ in stopped:
                self.state[r], self.changed[r] = WAITING, self.taken
            self.outputs.append(([r for r, _, _ in stopped], stops, self.session.submit([c for _, _, c in stopped])))
        return max(n)

    def _end(self, r: int, end: int) -> None:
        self.state[r], self.ends[r] = DONE, end

    def take_outputs(self, block: bool = False) -> None:
        """Feed the outputs that are back (the oldest one, waiting for it, with `block`)."""
        st = self.st
        while self.outputs and (self.outputs[0][2].done() or block):
            rows, stops, future = self.outputs.popleft()
            block = False
            results = [(text, status, self.session.injection(text)) for text, status in future.result()]
            width = st.feed.shape[1]
            feed = [ids + [0] * (width - len(ids)) for _, _, ids in results]
            idx = self._device(rows)
            st.feed[idx] = self._device(feed).view(len(rows), width)
            st.fed[idx] = 0
            st.fed_len[idx] = self._device([len(ids) for _, _, ids in results])
            st.wait[idx] = False
            for r, stop, (text, status, ids) in zip(rows, stops, results):
                self.rows.resumed(r, text, status, ids)
                self.state[r], self.changed[r] = LIVE, self.taken
                self.scanned[r] = stop + len(ids)

    def await_output(self) -> None:
        self.take_outputs(block=True)


def _per_row(value: Any, rows: int) -> bool:
    """Whether `value` is a tensor (or a list of them) with one entry per row."""
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(hasattr(v, "shape") and v.dim() > 0 and v.shape[0] == rows for v in values)


def _to_host(tensors: list[Any]) -> tuple[list[Any], Any]:
    """Copies of `tensors` on the host, made without a sync on CUDA (pinned; wait on the event)."""
    import torch

    if not tensors[0].is_cuda:
        return [t.clone() for t in tensors], None
    copies = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for c, t in zip(copies, tensors):
        c.copy_(t, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return copies, event


class _Stream:
    """The host side of a continuously refilled batch (`GreedyLoop.stream`). Every REFILL_CHECK steps
    a snapshot of the rows' `finished` flags is copied to the host without a sync and read at the
    next look, while the steps queued since then run; a row found finished in it (or sure to be: as
    many steps since its start as new tokens) gives its tokens (gathered on the device, copied
    without a sync) and is free. Once enough rows are free (REFILL_SHARE), they take the next prompts
    (`GreedyLoop._refill`) and start again at token 0. A snapshot taken before a row was refilled is
    ignored for it. The steps attend to the cache up to the segment of the furthest live row."""

    def __init__(self, loop: GreedyLoop, st: SimpleNamespace, ids: Any, mask: Any, numbers: list[int], made: int):
        batch = st.n.shape[0]
        self.loop, self.st, self.ids, self.mask, self.numbers, self.made = loop, st, ids, mask, numbers, made
        self.next = min(batch, ids.shape[0])  # the next prompt to start
        self.holds = list(range(self.next)) + [-1] * (batch - self.next)  # each row's prompt (-1: free)
        self.begun = [0] * batch  # steps run when the row started
        self.changed = [-1] * batch  # id of the last snapshot taken before the row started
        self.steps = 0
        self.taken = -1
        self.pending: tuple[int, Any, Any] | None = None  # (id, finished flags, their copy's event)
        self.harvests: deque[tuple[list[int], Any, Any]] = deque()  # (sequence numbers, tokens, event)

    def live(self) -> list[int]:
        return [r for r, p in enumerate(self.holds) if p >= 0]

    def made_by(self, r: int) -> int:
        """Row r's new tokens: exact while it decodes (one per step), frozen once it ends."""
        return self.steps - self.begun[r] + self.made

    def look(self) -> Iterator[tuple[list[int], Any]]:
        """Take a snapshot, free the rows ended in the previous one or by now; yield the tokens that are back."""
        previous = self.pending
        copies, event = _to_host([self.st.finished])
        self.taken += 1
        self.pending = (self.taken, copies[0], event)
        ended = {r for r in self.live() if self.made_by(r) >= self.loop.new}
        if previous is not None:
            snap, flags, event = previous
            if event is not None:
                event.synchronize()
            finished = flags.tolist()
            ended |= {r for r in self.live() if finished[r] and snap > self.changed[r]}
        if ended:
            rows = sorted(ended)
            tokens, event = _to_host([self.st.out[self.loop._device(rows), : self.loop.new]])
            self.harvests.append(([self.numbers[self.holds[r]] for r in rows], tokens[0], event))
            for r in rows:
                self.holds[r] = -1
        return self.ready()

    def ready(self, block: bool = False) -> Iterator[tuple[list[int], Any]]:
        while self.harvests and (block or self.harvests[0][2] is None or self.harvests[0][2].query()):
            numbers, tokens, event = self.harvests.popleft()
            if event is not None:
                event.synchronize()
            yield numbers, tokens

    def refill(self) -> None:
        free = [r for r, p in enumerate(self.holds) if p < 0]
        left = self.ids.shape[0] - self.next
        if not left or not (len(free) * REFILL_SHARE >= len(self.holds) or len(free) >= left or not self.live()):
            return
        rows, start = free[:left], self.next
        self.next += len(rows)
        self.loop._refill(self.st, rows, self.ids[start:self.next], self.mask[start:self.next], self.numbers[start:self.next])
        for j, r in enumerate(rows):
            self.holds[r], self.begun[r], self.changed[r] = start + j, self.steps, self.taken

    def advance(self) -> None:
        """Up to REFILL_CHECK steps (no more than the live rows may still need)."""
        made = [self.made_by(r) for r in self.live()]
        steps = min(REFILL_CHECK, self.loop.new - min(made))
        self.loop._steps(self.st, self.st.shape[1], max(made), steps)
        self.steps += steps

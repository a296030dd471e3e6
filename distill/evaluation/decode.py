"""Batched decoding of student prompts: seq2seq or causal, greedy or sampled.

Prompts are grouped into length buckets and each bucket into batches of one size that fit the
memory's budget of KV-cache tokens (the last batch is padded with copies); `plan_batches` picks the
buckets that minimise a memory-traffic cost model. Greedy decoding of the T5 and LLaMA families
runs `GreedyLoop`: a static KV cache per bucket and a decode step with fixed shapes, which on CUDA
is captured in CUDA graphs (the step is bound by launch overhead and memory traffic, not FLOPs),
a few graphs per bucket and no compiler. Other models, and sampling, go
through `generate` with its dynamic cache.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path
from typing import Any

from distill.cues import student_input
from distill.records import InputError
from distill.thoughts import thought_names
from distill.students import StudentSettings, format_prompt, load_student

log = logging.getLogger(__name__)

CPU_TOKEN_BUDGET = 32_768
RESERVE_BYTES = 4 << 30  # prefill activations, logits, CUDA graph pools
PREFILL_TOKENS = 32_768  # prompt tokens per prefill chunk (bounds its activations)
SEGMENT = 64  # decode steps per CUDA graph: each graph attends only to the cache filled by its last step
# Cost model of a decode step on an H100 (benchmarks/decode_step.py: CodeT5-large shape, batch 1,304, CUDA
# graphs): cache reads at the copy bandwidth, and a floor of launches and small kernels.
BANDWIDTH = 2.9e12  # bytes/s
STEP_FLOOR_S = 5e-3


@dataclass
class DecodeOptions:
    max_new_tokens: int = 256
    samples: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    token_budget: int | None = None  # KV-cache tokens per batch; None: from free memory (CUDA) or CPU_TOKEN_BUDGET
    max_batch: int = 1024  # sequences per batch at most (samples count)
    pad_multiple: int = 16
    loop: str = "auto"  # "static": GreedyLoop; "generate": HF generate; "auto": GreedyLoop where it applies
    compile: bool = True  # capture GreedyLoop's decode step in CUDA graphs (on CUDA)
    force_new_tokens: bool = False  # ignore EOS (benchmarks: a fixed amount of work)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError("samples must be at least 1")
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError("several samples need a temperature above 0 (greedy decoding repeats itself)")
        if self.loop not in ("auto", "static", "generate"):
            raise ValueError(f"loop must be auto, static or generate, got {self.loop!r}")


@dataclass(frozen=True)
class Batch:
    indices: list[int]  # into the prompt list
    capacity: int  # the batch size of its bucket (static shapes pad up to it)
    length: int  # padded prompt length: its bucket's


def plan_batches(lengths: Sequence[int], *, max_new_tokens: int, samples: int, token_budget: int,
                 max_batch: int, pad_multiple: int = 1, step_cost: float = 0.0) -> list[Batch]:
    """Length buckets and batches that minimise `plan_cost` within the memory budget.

    The prompts, longest first, are cut into buckets (runs of neighbours); a bucket pads to its longest
    prompt (rounded up to `pad_multiple`) and splits into equal batches, the fewest whose KV cache
    (sequences x (length + new tokens)) fits `token_budget`: one batch shape per bucket, so the static
    loop's graphs serve all its batches. Dynamic programming over at most 257 cut points (every
    prompt, or an even grid): a long outlier gets a small bucket of its own when that is cheaper than
    padding a big batch to its length. A prompt's samples share its batch, so a batch holds at least
    one prompt's `samples` sequences even where they alone exceed the budget."""
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    padded = [max(1, math.ceil(lengths[i] / pad_multiple)) * pad_multiple for i in order]
    grid = math.ceil(len(order) / 256)
    cuts = list(range(0, len(order), grid)) + [len(order)]

    def bucket(i: int, j: int) -> tuple[float, int]:  # cost and batch size of the bucket order[i:j]
        fit = max(1, min(max_batch, token_budget // (padded[i] + max_new_tokens)) // samples)
        count = math.ceil((j - i) / fit)
        size = math.ceil((j - i) / count)
        return _shape_cost(count, size, padded[i], max_new_tokens=max_new_tokens, samples=samples, step_cost=step_cost), size

    best: list[tuple[float, int, int]] = [(0.0, 0, 0)]  # per cut: (cost up to it, previous cut, batch size)
    for b in range(1, len(cuts)):
        best.append(min((best[a][0] + cost, a, size) for a in range(b) for cost, size in [bucket(cuts[a], cuts[b])]))
    spans, b = [], len(cuts) - 1
    while b:
        _, a, size = best[b]
        spans.append((cuts[a], cuts[b], size))
        b = a
    batches: list[Batch] = []
    for i, j, size in reversed(spans):
        batches += [Batch(order[s:min(s + size, j)], size, padded[i]) for s in range(i, j, size)]
    return batches


def plan_cost(batches: Sequence[Batch], *, max_new_tokens: int, samples: int, step_cost: float) -> float:
    """Modelled decoding cost of a plan, in KV-cache token reads (a decode step is bound by memory
    traffic): per step, `step_cost` (weights and the launch floor) plus the cache each sequence reads,
    its padded prompt and on average half the new tokens; each batch shape also warms up and
    captures its graphs, about two steps per segment."""
    shapes = Counter((b.capacity, b.length) for b in batches)
    return sum(_shape_cost(count, size, length, max_new_tokens=max_new_tokens, samples=samples, step_cost=step_cost)
               for (size, length), count in shapes.items())


def _shape_cost(count: int, size: int, length: int, *, max_new_tokens: int, samples: int, step_cost: float) -> float:
    """`plan_cost` of `count` batches of one shape (`size` prompts padded to `length`)."""
    steps = count * max_new_tokens + 2 * math.ceil(max_new_tokens / SEGMENT)
    return steps * (step_cost + size * samples * (length + max_new_tokens / 2))


def step_cost(model: Any) -> float:
    """A decode step's fixed cost for `plan_cost`, in KV-cache token reads: reading the weights plus
    the launch floor (STEP_FLOOR_S at BANDWIDTH)."""
    element = model.dtype.itemsize
    weights = sum(p.numel() for p in model.parameters()) * element
    return (weights + STEP_FLOOR_S * BANDWIDTH) / kv_bytes_per_token(model.config, element)


def kv_bytes_per_token(config: Any, element_size: int) -> int:
    """KV-cache bytes per sequence position (decoder self-attention; for seq2seq also per source
    token of the cross-attention cache, which has the same size per position)."""
    layers = getattr(config, "num_decoder_layers", None) or config.num_hidden_layers
    heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None) or config.hidden_size // config.num_attention_heads
    return 2 * layers * heads * head_dim * element_size


def memory_token_budget(model: Any) -> int:
    import torch

    if model.device.type != "cuda":
        return CPU_TOKEN_BUDGET
    free, _ = torch.cuda.mem_get_info(model.device)
    per_token = kv_bytes_per_token(model.config, model.dtype.itemsize)
    return max(1, int(free * 0.9 - RESERVE_BYTES) // per_token)


def rationale_extractor() -> Callable[[str, str], str]:
    """`extract_rationale(thought, raw)` of the teacher backends, so that teacher and student outputs
    go through one function; the stripped text where the backends are not installed."""
    try:
        from distill.teachers.extract import extract_rationale
    except ImportError:
        return lambda thought, raw: raw.strip()
    return extract_rationale


def _attend(q: Any, k: Any, v: Any, mask: Any, scale: float | None = None) -> Any:
    """Scaled dot-product attention, [batch, heads, queries, dim] -> [batch, queries, heads * dim]."""
    import torch.nn.functional as F

    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, **gqa)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _attend_one(q: Any, k: Any, v: Any, mask: Any, scale: float | None = None) -> Any:
    """`_attend` for one query position as two batched matrix-vector products, the scores upcast to
    fp32 for the mask and softmax (as HF's eager T5); q and k/v have the same number of heads.
    T5's per-head position bias keeps SDPA off its fused kernels (on an H100 it fell back to the math
    path, copying K at every step: 135 ms per 770M step at batch 1,304, this 26 ms)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q * scale).matmul(k.transpose(-1, -2)).float() + mask
    out = scores.softmax(-1).to(v.dtype).matmul(v)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _heads(x: Any, heads: int) -> Any:
    """[batch, tokens, heads * dim] -> [batch, heads, tokens, dim]."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


class _T5:
    """T5-family decoder step: self-attention over a static cache, cross-attention over the source's
    K/V computed once per batch, T5's relative position bias; the HF modules' weights and norms."""

    def __init__(self, model: Any):
        self.model, self.config = model, model.config
        self.blocks = model.decoder.block
        self.rel = self.blocks[0].layer[0].SelfAttention  # holds the relative attention bias
        self.heads = self.config.num_heads

    self_attention = staticmethod(_attend_one)  # class attributes: benchmarks/decode_step.py swaps them
    cross_attention = staticmethod(_attend)

    def cache_len(self, length: int, new: int) -> int:
        return new  # the start token and all new tokens but the last

    def keys(self, length: int, i: int) -> int:
        return i + 1  # self-attention slots read by the step that writes token i

    def allocate(self, st: SimpleNamespace, batch: int, length: int, new: int) -> None:
        import torch

        m, heads, dim = self.model, self.heads, self.config.d_kv
        empty = lambda n: torch.zeros(batch, heads, n, dim, dtype=m.dtype, device=m.device)
        st.cross_k, st.cross_v = [empty(length) for _ in self.blocks], [empty(length) for _ in self.blocks]
        st.cross_mask = torch.zeros(batch, 1, 1, length, dtype=m.dtype, device=m.device)

    def prefill(self, st: SimpleNamespace, ids: Any, mask: Any) -> None:
        import torch

        low = torch.finfo(self.model.dtype).min
        st.cross_mask.copy_(torch.where(mask.bool(), 0.0, low)[:, None, None, :])
        st.tok.fill_(self.config.decoder_start_token_id)
        for rows in _chunks_of(ids):
            hidden = self.model.encoder(input_ids=ids[rows], attention_mask=mask[rows])[0]
            for block, ck, cv in zip(self.blocks, st.cross_k, st.cross_v):
                attn = block.layer[1].EncDecAttention
                ck[rows] = _heads(attn.k(hidden), self.heads)
                cv[rows] = _heads(attn.v(hidden), self.heads)

    def step(self, st: SimpleNamespace, keys: int) -> Any:
        import torch

        low = torch.finfo(self.model.dtype).min
        slots = torch.arange(keys, device=st.i.device)
        bucket = self.rel._relative_position_bucket(slots - st.i, bidirectional=False,
                                                     num_buckets=self.rel.relative_attention_num_buckets,
                                                     max_distance=self.rel.relative_attention_max_distance)
        bias = self.rel.relative_attention_bias(bucket).T[None, :, None, :]  # [1, heads, 1, keys]
        bias = bias + torch.where(slots <= st.i, 0.0, low).to(bias.dtype)
        x = self.model.decoder.embed_tokens(st.tok)
        for block, k, v, ck, cv in zip(self.blocks, st.k, st.v, st.cross_k, st.cross_v):
            layer, attn = block.layer[0], block.layer[0].SelfAttention
            h = layer.layer_norm(x)
            k.index_copy_(2, st.i, _heads(attn.k(h), self.heads))
            v.index_copy_(2, st.i, _heads(attn.v(h), self.heads))
            x = x + attn.o(self.self_attention(_heads(attn.q(h), self.heads), k[:, :, :keys], v[:, :, :keys], bias, 1.0))
            layer, attn = block.layer[1], block.layer[1].EncDecAttention
            x = x + attn.o(self.cross_attention(_heads(attn.q(layer.layer_norm(x)), self.heads), ck, cv, st.cross_mask, 1.0))
            x = block.layer[2](x)
        x = self.model.decoder.final_layer_norm(x)
        if self.config.tie_word_embeddings:
            x = x * self.config.d_model ** -0.5
        return self.model.lm_head(x)[:, -1]


class _Llama:
    """LLaMA-family decoder layers over a static cache (prompt, then new tokens), left-padded prompts;
    the HF modules' weights, norms, MLPs and rotary embedding."""

    def __init__(self, model: Any):
        self.model, self.body, self.config = model, model.model, model.config
        self.heads = self.config.num_attention_heads
        self.kv_heads = getattr(self.config, "num_key_value_heads", None) or self.heads

    def cache_len(self, length: int, new: int) -> int:
        return length + new - 1  # the prompt and all new tokens but the last

    def keys(self, length: int, i: int) -> int:
        return length + i  # slots read by the step that writes token i (token 0 comes from the prefill)

    def allocate(self, st: SimpleNamespace, batch: int, length: int, new: int) -> None:
        import torch

        st.length = length
        st.seen = torch.zeros(batch, dtype=torch.long, device=self.model.device)  # real prompt tokens
        st.valid = torch.ones(batch, 1, 1, length + new - 1, dtype=torch.bool, device=self.model.device)

    def _layers(self, st: SimpleNamespace, rows: slice, x: Any, positions: Any, slots: Any, mask: Any, keys: int) -> Any:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cos, sin = self.body.rotary_emb(x, positions)
        for layer, k, v in zip(self.body.layers, st.k, st.v):
            attn, h = layer.self_attn, layer.input_layernorm(x)
            q, kk = apply_rotary_pos_emb(_heads(attn.q_proj(h), self.heads), _heads(attn.k_proj(h), self.kv_heads), cos, sin)
            k[rows].index_copy_(2, slots, kk)
            v[rows].index_copy_(2, slots, _heads(attn.v_proj(h), self.kv_heads))
            x = x + attn.o_proj(_attend(q, k[rows, :, :keys], v[rows, :, :keys], mask))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.body.norm(x)

    def prefill(self, st: SimpleNamespace, ids: Any, mask: Any) -> Any:
        import torch

        low, length = torch.finfo(self.model.dtype).min, ids.shape[1]
        st.valid[..., :length] = mask.bool()[:, None, None, :]
        st.seen.copy_(mask.sum(-1))
        slots = torch.arange(length, device=ids.device)
        causal = slots[None, :] <= slots[:, None]
        last = []
        for rows in _chunks_of(ids):
            allowed = causal & st.valid[rows, :, :, :length]
            positions = (mask[rows].cumsum(-1) - 1).clamp(min=0)
            x = self.body.embed_tokens(ids[rows])
            x = self._layers(st, rows, x, positions, slots, torch.where(allowed, 0.0, low).to(x.dtype), length)
            last.append(self.model.lm_head(x[:, -1]))
        return torch.cat(last)

    def step(self, st: SimpleNamespace, keys: int) -> Any:
        import torch

        slot = st.length + st.i - 1
        allowed = st.valid[..., :keys] & (torch.arange(keys, device=slot.device) <= slot)
        x = self.body.embed_tokens(st.tok)
        mask = torch.where(allowed, 0.0, torch.finfo(x.dtype).min).to(x.dtype)
        return self.model.lm_head(self._layers(st, slice(None), x, (st.seen + st.i - 1)[:, None], slot, mask, keys))[:, -1]


def _chunks_of(ids: Any) -> list[slice]:
    rows = max(1, PREFILL_TOKENS // ids.shape[1])
    return [slice(s, s + rows) for s in range(0, ids.shape[0], rows)]


def cuda_graph(fn: Callable[[], None], pool: Any) -> Callable[[], None]:
    """`fn` (already warmed up) captured in a CUDA graph; returns its replay."""
    import torch

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        fn()
    return graph.replay


class GreedyLoop:
    """Greedy decoding with static shapes for T5 and LLaMA models (`supports`): per bucket shape
    (batch, prompt length) one static KV cache; the prompt prefilled in chunks, eagerly; then the
    decode step, all in place on that state, in segments of SEGMENT steps, each attending to the
    cache slots filled by its last step. With `capture` (CUDA: `cuda_graph`) each segment's step is
    captured once per shape and replayed: the graphs of a batch shape serve all its batches.
    Output matches `generate(do_sample=False)` (with `min_new_tokens=max_new_tokens` when
    `force_new_tokens`), up to floating-point ties."""

    @staticmethod
    def supports(model: Any) -> bool:
        from transformers import LlamaForCausalLM, T5ForConditionalGeneration

        return isinstance(model, (T5ForConditionalGeneration, LlamaForCausalLM))

    def __init__(self, model: Any, *, max_new_tokens: int, pad_token_id: int, force_new_tokens: bool,
                 capture: Callable[[Callable[[], None], Any], Callable[[], None]] | None = None):
        import torch
        from transformers import T5ForConditionalGeneration

        self.model, self.new, self.force, self.capture = model, max_new_tokens, force_new_tokens, capture
        self.arch = _T5(model) if isinstance(model, T5ForConditionalGeneration) else _Llama(model)
        eos = model.generation_config.eos_token_id
        self.eos = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=model.device)
        self.pad = pad_token_id
        self.state: SimpleNamespace | None = None
        self.shapes: list[tuple[int, int]] = []  # the batch shapes given a state, in order
        self.captured: list[tuple[int, int, int]] = []  # (batch, length, keys) of each captured step

    def _allocate(self, batch: int, length: int) -> SimpleNamespace:
        import torch

        m, arch = self.model, self.arch
        n = arch.cache_len(length, self.new)
        cfg = m.config
        heads = getattr(arch, "kv_heads", arch.heads)
        dim = getattr(cfg, "head_dim", None) or getattr(cfg, "d_kv", None) or cfg.hidden_size // arch.heads
        layers = getattr(cfg, "num_decoder_layers", None) or cfg.num_hidden_layers
        empty = lambda: torch.zeros(batch, heads, n, dim, dtype=m.dtype, device=m.device)
        st = SimpleNamespace(shape=(batch, length), steps={}, k=[empty() for _ in range(layers)],
                             tok=torch.zeros(batch, 1, dtype=torch.long, device=m.device),
                             i=torch.zeros(1, dtype=torch.long, device=m.device),
                             out=torch.zeros(batch, self.new, dtype=torch.long, device=m.device),
                             finished=torch.zeros(batch, dtype=torch.bool, device=m.device),
                             pool=torch.cuda.graph_pool_handle() if self.capture is cuda_graph else None)
        st.v = [empty() for _ in st.k]
        arch.allocate(st, batch, length, self.new)
        return st

    def _emit(self, st: SimpleNamespace, logits: Any) -> None:
        """Token `i` from `logits`: EOS barred when forcing, pad after EOS; in place, no host sync."""
        if self.force and len(self.eos):
            logits = logits.index_fill(1, self.eos, float("-inf"))
        token = logits.argmax(-1).masked_fill(st.finished, self.pad)
        st.finished |= token.unsqueeze(1).eq(self.eos).any(1)
        st.out.index_copy_(1, st.i, token[:, None])
        st.tok.copy_(token[:, None])
        st.i += 1

    def _step_fn(self, st: SimpleNamespace, keys: int) -> Callable[[], None]:
        def step() -> None:
            self._emit(st, self.arch.step(st, keys))

        if self.capture is None:
            return step
        if keys not in st.steps:  # warm up (on the side stream CUDA graphs want), undo its writes, capture
            import torch

            saved = [t.clone() for t in (st.tok, st.i, st.out, st.finished)]
            side = torch.cuda.Stream() if st.pool is not None else None
            if side is not None:
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    step()
                torch.cuda.current_stream().wait_stream(side)
            else:
                step()
            for t, value in zip((st.tok, st.i, st.out, st.finished), saved):
                t.copy_(value)
            st.steps[keys] = self.capture(step, st.pool)
            self.captured.append((*st.shape, keys))
        return st.steps[keys]

    def __call__(self, ids: Any, mask: Any) -> Any:
        """New token ids [batch, max_new_tokens] (pad after EOS) for a padded prompt batch."""
        import torch

        shape = (ids.shape[0], ids.shape[1])
        if self.state is None or self.state.shape != shape:
            self.state = None  # free the last shape's cache and graphs first
            self.state = self._allocate(*shape)
            self.shapes.append(shape)
        st, arch = self.state, self.arch
        with torch.inference_mode():
            st.i.zero_()
            st.finished.zero_()
            st.out.fill_(self.pad)
            first = arch.prefill(st, ids, mask)
            if first is not None:
                self._emit(st, first)
            start = 1 if first is not None else 0
            for begin in range(start, self.new, SEGMENT):
                end = min(begin + SEGMENT, self.new)
                step = self._step_fn(st, arch.keys(ids.shape[1], end - 1))
                for _ in range(begin, end):
                    step()
                if not self.force and bool(st.finished.all()):
                    break
            return st.out.clone()


class HFDecoder:
    """Decodes with `GreedyLoop` where it applies (greedy, one sample, a T5 or LLaMA model; see
    `DecodeOptions.loop`), else with `model.generate`; yields results batch by batch so callers can
    check and save early."""

    def __init__(self, model: Any, tokenizer: Any, settings: StudentSettings, options: DecodeOptions):
        self.model, self.tokenizer, self.settings, self.options = model, tokenizer, settings, options
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
            self.loop = GreedyLoop(model, max_new_tokens=options.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                   force_new_tokens=options.force_new_tokens, capture=cuda_graph if graphs else None)

    def prompt(self, question: str, thought: str) -> str:
        return format_prompt(self.tokenizer, student_input(question, thought, self.settings.cues), self.settings)

    def _generate_kwargs(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {"max_new_tokens": o.max_new_tokens, "num_return_sequences": o.samples,
                              "pad_token_id": self.tokenizer.pad_token_id}
        kw.update(do_sample=True, temperature=o.temperature, top_p=o.top_p) if o.temperature > 0 else kw.update(do_sample=False)
        if o.force_new_tokens:
            kw["min_new_tokens"] = o.max_new_tokens
        return kw

    def plan(self, prompts: Sequence[str]) -> list[Batch]:
        o = self.options
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=True,
                                                      max_length=self.settings.max_source_len)["input_ids"]]
        budget = o.token_budget or memory_token_budget(self.model)
        return plan_batches(lengths, max_new_tokens=o.max_new_tokens, samples=o.samples, token_budget=budget,
                            max_batch=o.max_batch, pad_multiple=o.pad_multiple, step_cost=step_cost(self.model))

    def decode(self, prompts: Sequence[str], batches: Sequence[Batch] | None = None) -> Iterator[tuple[list[int], list[list[str]]]]:
        """(prompt indices, their `samples` texts each) per batch."""
        import torch

        torch.manual_seed(self.options.seed)
        kwargs = self._generate_kwargs()
        try:
            for batch in batches if batches is not None else self.plan(prompts):
                texts = [prompts[i] for i in batch.indices]
                if self.loop is not None:  # one shape per bucket: pad the batch with copies, dropped below
                    texts += texts[-1:] * (batch.capacity - len(texts))
                enc = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt",
                                     max_length=min(batch.length, self.settings.max_source_len)).to(self.model.device)
                if self.loop is not None:
                    out = self.loop(enc["input_ids"], enc["attention_mask"])
                else:
                    with torch.inference_mode():
                        out = self.model.generate(**enc, **kwargs)
                    if self.causal:
                        out = out[:, enc["input_ids"].shape[1]:]
                decoded = self.tokenizer.batch_decode(out[: len(batch.indices) * self.options.samples], skip_special_tokens=True)
                n = self.options.samples
                yield batch.indices, [decoded[j * n:(j + 1) * n] for j in range(len(batch.indices))]
        finally:
            if self.loop is not None:
                self.loop.state = None  # free the static cache and its graphs


class VllmDecoder:
    """Causal models through vLLM (when installed, on CUDA): it schedules batches and the KV cache itself;
    prompts go to it in chunks only so that results are saved as they come."""

    CHUNK = 2048

    def __init__(self, path: str, tokenizer: Any, settings: StudentSettings, options: DecodeOptions):
        from vllm import LLM, SamplingParams

        self.tokenizer, self.settings, self.options = tokenizer, settings, options
        self.prompting: dict[str, Any] = {"cues": settings.cues, "format": settings.prompt_format}
        self.llm = LLM(model=path, dtype="bfloat16", seed=options.seed)
        self.params = SamplingParams(
            n=options.samples, temperature=options.temperature, top_p=options.top_p, max_tokens=options.max_new_tokens,
            min_tokens=options.max_new_tokens if options.force_new_tokens else 0, ignore_eos=options.force_new_tokens,
        )

    prompt = HFDecoder.prompt

    def plan(self, prompts: Sequence[Any]) -> list[Batch]:
        return _chunks(len(prompts), self.CHUNK)

    def decode(self, prompts: Sequence[str], batches: Sequence[Batch] | None = None) -> Iterator[tuple[list[int], list[list[str]]]]:
        for batch in batches if batches is not None else self.plan(prompts):
            outs = self.llm.generate([prompts[i] for i in batch.indices], self.params, use_tqdm=False)
            yield batch.indices, [[c.text for c in o.outputs] for o in outs]


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
                       list(p.stop) or None, {"question": question, "thought": thought})

    def plan(self, prompts: Sequence[Any]) -> list[Batch]:
        return _chunks(len(prompts), self.CHUNK)

    def decode(self, prompts: Sequence[Any], batches: Sequence[Batch] | None = None) -> Iterator[tuple[list[int], list[list[str]]]]:
        from distill.teachers.base import is_transient

        try:
            for batch in batches if batches is not None else self.plan(prompts):
                requests = [prompts[i] for i in batch.indices]
                results = self.loop.run_until_complete(asyncio.gather(*map(self.teacher.complete, requests)))
                for completions in results:
                    failed = next((c.error for c in completions if is_transient(c.error)), None)
                    if failed:  # not answered: stop here, a rerun resumes and asks again
                        raise InputError(f"teacher {self.teacher.name}: {failed}; rerun to resume")
                yield batch.indices, [[c.text or "" for c in cs] for cs in results]
        finally:
            self.loop.run_until_complete(self.teacher.aclose())


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

"""Hand-written greedy decode steps of the T5 and LLaMA families over a static KV cache.

Each class drives the HF modules' weights, norms and MLPs with fixed shapes and no host sync, so
that `graphs.GreedyLoop` can capture a step in a CUDA graph. The state `st` is a namespace that the
loop allocates (`k`, `v` per layer, each row's current token `tok` and its count of new tokens `n`:
rows advance on their own, a row waiting for its program does not) and `allocate` completes with
what the model family needs. With `fused` a step's attention is `decode_attention`'s kernel (each
row reads only its filled slots), and the residual adds with the norms after them, LLaMA's RoPE and
SwiGLU are `decode_ops`' kernels; without it, SDPA or `attend_one` over the first `keys` slots, and HF's
modules.
"""
from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from distill.evaluation import decode_ops
from distill.evaluation.decode_attention import compile_ahead, decode_attention

PREFILL_TOKENS = 32_768  # prompt tokens per prefill chunk (bounds its activations)


def attend(q: Any, k: Any, v: Any, mask: Any, scale: float | None = None) -> Any:
    """Scaled dot-product attention, [batch, heads, queries, dim] -> [batch, queries, heads * dim]."""
    import torch.nn.functional as F

    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, **gqa)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def attend_one(q: Any, k: Any, v: Any, mask: Any, scale: float | None = None) -> Any:
    """`attend` for one query position as two batched matrix-vector products, the scores upcast to
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


def _chunks_of(ids: Any) -> list[slice]:
    """Row slices of a prompt batch, about PREFILL_TOKENS tokens each."""
    rows = max(1, PREFILL_TOKENS // ids.shape[1])
    return [slice(s, s + rows) for s in range(0, ids.shape[0], rows)]


class T5Step:
    """T5-family decoder step: self-attention over a static cache, cross-attention over the source's
    K/V computed once per batch, T5's relative position bias; the HF modules' weights and norms."""

    def __init__(self, model: Any, fused: bool = False):
        self.model, self.config, self.fused = model, model.config, fused
        self.blocks = model.decoder.block
        self.rel = self.blocks[0].layer[0].SelfAttention  # holds the relative attention bias
        self.heads = self.config.num_heads
        self.norm = _add_norm(fused)
        if fused:
            compile_ahead(model.device, model.dtype, self.heads, self.heads, self.config.d_kv, bias=True)
            decode_ops.compile_ahead(model.device, model.dtype, self.config.d_model)

    self_attention = staticmethod(attend_one)  # class attributes: benchmarks/decode_step.py swaps them
    cross_attention = staticmethod(attend)

    def cache_len(self, length: int, new: int) -> int:
        return new  # the start token and all new tokens but the last (`new`: all a row may hold, outputs too)

    def keys(self, length: int, i: int) -> int:
        return i + 1  # self-attention slots read by the step that writes token i

    def allocate(self, st: SimpleNamespace, batch: int, length: int, new: int) -> None:
        import torch

        m, heads, dim = self.model, self.heads, self.config.d_kv
        empty = lambda n: torch.zeros(batch, heads, n, dim, dtype=m.dtype, device=m.device)
        st.cross_k, st.cross_v = [empty(length) for _ in self.blocks], [empty(length) for _ in self.blocks]
        st.cross_mask = torch.zeros(batch, 1, 1, length, dtype=m.dtype, device=m.device)
        if self.fused:  # the bias by distance back from the query (the same for every row), source spans
            back = torch.arange(new + 1, device=m.device)  # a finished row's query may sit on the sink slot `new`
            bucket = self.rel._relative_position_bucket(-back, bidirectional=False,
                                                        num_buckets=self.rel.relative_attention_num_buckets,
                                                        max_distance=self.rel.relative_attention_max_distance)
            st.bias = self.rel.relative_attention_bias(bucket).float().t().contiguous()  # [heads, distances]
            st.start = torch.zeros(batch, dtype=torch.long, device=m.device)
            st.cross_lo, st.cross_hi = torch.zeros_like(st.start), torch.zeros_like(st.start)

    def prefill(self, st: SimpleNamespace, ids: Any, mask: Any) -> None:
        import torch

        low = torch.finfo(self.model.dtype).min
        st.cross_mask.copy_(torch.where(mask.bool(), 0.0, low)[:, None, None, :])
        st.tok.fill_(self.config.decoder_start_token_id)
        if self.fused:
            for span, bound in zip((st.cross_lo, st.cross_hi), _span(mask)):
                span.copy_(bound)
        for rows in _chunks_of(ids):
            hidden = self.model.encoder(input_ids=ids[rows], attention_mask=mask[rows])[0]
            for block, ck, cv in zip(self.blocks, st.cross_k, st.cross_v):
                attn = block.layer[1].EncDecAttention
                ck[rows] = _heads(attn.k(hidden), self.heads)
                cv[rows] = _heads(attn.v(hidden), self.heads)

    def step(self, st: SimpleNamespace, keys: int) -> Any:
        """Token `st.n` of each row: its input written at slot `st.n`, its own relative positions."""
        import torch

        if self.fused:
            idle, end = _idle(st), st.n + 1
            first, cross_first = torch.where(idle, st.n, st.start), torch.where(idle, st.cross_hi - 1, st.cross_lo)
            attend_self = lambda q, k, v: decode_attention(q, k, v, first, end, 1.0, st.bias)
            attend_cross = lambda q, k, v: decode_attention(q, k, v, cross_first, st.cross_hi, 1.0)
        else:
            bias = self._bias(st, keys)
            attend_self = lambda q, k, v: self.self_attention(q, k[:, :, :keys], v[:, :, :keys], bias, 1.0)
            attend_cross = lambda q, k, v: self.cross_attention(q, k, v, st.cross_mask, 1.0)
        at = st.n.view(-1, 1, 1, 1).expand(-1, self.heads, 1, self.config.d_kv)
        norm, blocks = self.norm, self.blocks
        x, h = norm(self.model.decoder.embed_tokens(st.tok), None, blocks[0].layer[0].layer_norm)
        for i, (block, k, v, ck, cv) in enumerate(zip(blocks, st.k, st.v, st.cross_k, st.cross_v)):
            attn = block.layer[0].SelfAttention
            k.scatter_(2, at, _heads(attn.k(h), self.heads))
            v.scatter_(2, at, _heads(attn.v(h), self.heads))
            x, h = norm(x, attn.o(attend_self(_heads(attn.q(h), self.heads), k, v)), block.layer[1].layer_norm)
            attn = block.layer[1].EncDecAttention
            x, h = norm(x, attn.o(attend_cross(_heads(attn.q(h), self.heads), ck, cv)), block.layer[2].layer_norm)
            following = blocks[i + 1].layer[0].layer_norm if i + 1 < len(blocks) else self.model.decoder.final_layer_norm
            x, h = norm(x, block.layer[2].DenseReluDense(h), following)  # T5LayerFF, then the next norm
        if self.config.tie_word_embeddings:
            h = h * self.config.d_model ** -0.5
        return self.model.lm_head(h)[:, -1]

    def _bias(self, st: SimpleNamespace, keys: int) -> Any:
        """Relative-position bias and causal mask of each row's query over the first `keys` slots."""
        import torch

        low = torch.finfo(self.model.dtype).min
        slots = torch.arange(keys, device=st.n.device)
        bucket = self.rel._relative_position_bucket(slots[None, :] - st.n[:, None], bidirectional=False,
                                                     num_buckets=self.rel.relative_attention_num_buckets,
                                                     max_distance=self.rel.relative_attention_max_distance)
        bias = self.rel.relative_attention_bias(bucket).permute(0, 2, 1)[:, :, None, :]  # [batch, heads, 1, keys]
        return bias + torch.where(slots[None, :] <= st.n[:, None], 0.0, low).to(bias.dtype)[:, None, None, :]


def _add_norm(fused: bool) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """`norm(x, delta, module)`: `(s, module(s))`, `s = x + delta` (the residual add; `delta` None: `s = x`)
    and `module` an RMS norm (LLaMA's, T5's); one `decode_ops` kernel where `fused`."""
    def norm(x: Any, delta: Any, module: Any) -> tuple[Any, Any]:
        x = x if delta is None else x + delta
        return x, module(x)

    def kernel(x: Any, delta: Any, module: Any) -> tuple[Any, Any]:
        if module.weight.dtype != x.dtype or (delta is not None and delta.dtype != x.dtype):
            return norm(x, delta, module)  # e.g. fp16 T5, whose `wo` stays fp32: the sum is promoted
        return decode_ops.add_rms_norm(x, delta, module.weight, module.variance_epsilon)

    return kernel if fused else norm


def _idle(st: SimpleNamespace) -> Any:
    """Rows whose step changes nothing (finished, or waiting for their program): the fused kernel reads
    only the slot each writes, so that their attention costs nothing but stays finite. What a waiting
    row writes is written again when it resumes; a finished row's tokens are not kept."""
    return st.finished | st.wait


def _span(mask: Any) -> tuple[Any, Any]:
    """Each row's first and one-past-last attended position of a 0/1 mask [batch, length], which must be
    one run of ones per row (padding on one side): the fused kernel reads spans. A row of padding only
    gets (0, 1), a finite output."""
    import torch

    at = torch.arange(mask.shape[1], device=mask.device)
    on = mask.bool()
    lo = torch.where(on, at, mask.shape[1]).amin(-1)
    hi = torch.where(on, at + 1, 0).amax(-1)
    if not bool(((hi - lo).clamp(min=0) == on.sum(-1)).all()):
        raise ValueError("the fused decode attention needs each row's attention mask to be one run of ones")
    empty = ~on.any(-1)
    return lo.masked_fill(empty, 0), hi.masked_fill(empty, 1)


class LlamaStep:
    """LLaMA-family decoder layers over a static cache (prompt, then new tokens), left-padded prompts;
    the HF modules' weights, norms, MLPs and rotary embedding."""

    def __init__(self, model: Any, fused: bool = False):
        self.model, self.body, self.config, self.fused = model, model.model, model.config, fused
        self.heads = self.config.num_attention_heads
        self.kv_heads = getattr(self.config, "num_key_value_heads", None) or self.heads
        self.norm = _add_norm(fused)
        self.swiglu = fused and self.config.hidden_act == "silu"  # SiLU(gate) * up by decode_ops' kernel
        if fused:
            c = self.config
            dim = getattr(c, "head_dim", None) or c.hidden_size // self.heads
            compile_ahead(model.device, model.dtype, self.heads, self.kv_heads, dim)
            decode_ops.compile_ahead(model.device, model.dtype, c.hidden_size, c.intermediate_size if self.swiglu else 0,
                                     (self.heads * dim, self.kv_heads * dim, dim))

    def cache_len(self, length: int, new: int) -> int:
        return length + new - 1  # the prompt and all new tokens but the last

    def keys(self, length: int, i: int) -> int:
        return length + i  # slots read by the step that writes token i (token 0 comes from the prefill)

    def allocate(self, st: SimpleNamespace, batch: int, length: int, new: int) -> None:
        import torch

        st.length = length
        st.seen = torch.zeros(batch, dtype=torch.long, device=self.model.device)  # real prompt tokens
        st.valid = torch.ones(batch, 1, 1, length + new - 1, dtype=torch.bool, device=self.model.device)
        st.start = torch.zeros(batch, dtype=torch.long, device=self.model.device)  # first real prompt slot

    def _layers(self, st: SimpleNamespace, rows: slice, x: Any, positions: Any, slots: Any,
                attention: Callable[[Any, Any, Any], Any]) -> Any:
        """`slots`: the cache slots written, the same for all rows ([tokens], prefill) or one per row
        (a scatter index [batch, kv heads, 1, dim], a step); `attention(q, k, v)` over the rows' caches."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        def write(cache: Any, new: Any) -> None:
            cache.index_copy_(2, slots, new) if slots.dim() == 1 else cache.scatter_(2, slots, new)

        norm = self.norm
        if self.fused:  # decode_ops' kernels; the same arithmetic as HF's modules below
            def rotated(attn: Any, h: Any) -> tuple[Any, Any]:
                return (_heads(decode_ops.rope(attn.q_proj(h), cos, sin), self.heads),
                        _heads(decode_ops.rope(attn.k_proj(h), cos, sin), self.kv_heads))
        else:
            def rotated(attn: Any, h: Any) -> tuple[Any, Any]:
                return apply_rotary_pos_emb(_heads(attn.q_proj(h), self.heads), _heads(attn.k_proj(h), self.kv_heads),
                                            cos, sin)

        cos, sin = self.body.rotary_emb(x, positions)
        layers = self.body.layers
        x, h = norm(x, None, layers[0].input_layernorm)
        for i, (layer, k, v) in enumerate(zip(layers, st.k, st.v)):
            attn = layer.self_attn
            q, kk = rotated(attn, h)
            write(k[rows], kk)
            write(v[rows], _heads(attn.v_proj(h), self.kv_heads))
            x, h = norm(x, attn.o_proj(attention(q, k[rows], v[rows])), layer.post_attention_layernorm)
            following = layers[i + 1].input_layernorm if i + 1 < len(layers) else self.body.norm
            x, h = norm(x, self._mlp(layer.mlp, h), following)  # the residual add, then the next norm
        return h

    def _mlp(self, mlp: Any, h: Any) -> Any:
        """LLaMA's MLP, its SiLU(gate) * up by `decode_ops`' kernel where `swiglu`."""
        if self.swiglu:
            return mlp.down_proj(decode_ops.silu_mul(mlp.gate_proj(h), mlp.up_proj(h)))
        return mlp(h)

    def prefill(self, st: SimpleNamespace, ids: Any, mask: Any) -> Any:
        import torch

        low, length = torch.finfo(self.model.dtype).min, ids.shape[1]
        st.valid[..., :length] = mask.bool()[:, None, None, :]
        st.seen.copy_(mask.sum(-1))
        if self.fused:  # the kernel reads slots from `start` on: the prompt must be left-padded
            st.start.copy_(length - st.seen)
            if not bool((mask.bool() == (torch.arange(length, device=ids.device) >= st.start[:, None])).all()):
                raise ValueError("the fused decode attention needs left-padded prompts")
        slots = torch.arange(length, device=ids.device)
        causal = slots[None, :] <= slots[:, None]
        last = []
        for rows in _chunks_of(ids):
            allowed = causal & st.valid[rows, :, :, :length]
            positions = (mask[rows].cumsum(-1) - 1).clamp(min=0)
            x = self.body.embed_tokens(ids[rows])
            bias = torch.where(allowed, 0.0, low).to(x.dtype)
            x = self._layers(st, rows, x, positions, slots,
                             lambda q, k, v, bias=bias: attend(q, k[:, :, :length], v[:, :, :length], bias))
            last.append(self.model.lm_head(x[:, -1]))
        return torch.cat(last)

    def step(self, st: SimpleNamespace, keys: int) -> Any:
        """Token `st.n` of each row: its input at slot `length + n - 1`, position `seen + n - 1`."""
        import torch

        slot = st.length + st.n - 1
        x = self.body.embed_tokens(st.tok)
        if self.fused:
            end, scale = slot + 1, st.k[0].shape[-1] ** -0.5
            first = torch.where(_idle(st), slot, st.start)
            attention = lambda q, k, v: decode_attention(q, k, v, first, end, scale)
        else:
            allowed = st.valid[..., :keys] & (torch.arange(keys, device=slot.device) <= slot[:, None, None, None])
            mask = torch.where(allowed, 0.0, torch.finfo(x.dtype).min).to(x.dtype)
            attention = lambda q, k, v: attend(q, k[:, :, :keys], v[:, :, :keys], mask)
        at = slot.view(-1, 1, 1, 1).expand(-1, self.kv_heads, 1, st.k[0].shape[-1])
        return self.model.lm_head(self._layers(st, slice(None), x, (st.seen + st.n - 1)[:, None], at, attention))[:, -1]

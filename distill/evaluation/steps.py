"""Hand-written greedy decode steps of the T5 and LLaMA families over a static KV cache.

Each class drives the HF modules' weights, norms and MLPs with fixed shapes and no host sync, so
that `graphs.GreedyLoop` can capture a step in a CUDA graph. The state `st` is a namespace that the
loop allocates (`k`, `v` per layer, each row's current token `tok` and its count of new tokens `n`:
rows advance on their own, a row waiting for its program does not) and `allocate` completes with
what the model family needs.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

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

    def __init__(self, model: Any):
        self.model, self.config = model, model.config
        self.blocks = model.decoder.block
        self.rel = self.blocks[0].layer[0].SelfAttention  # holds the relative attention bias
        self.heads = self.config.num_heads

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
        """Token `st.n` of each row: its input written at slot `st.n`, its own relative positions."""
        import torch

        low = torch.finfo(self.model.dtype).min
        slots = torch.arange(keys, device=st.n.device)
        bucket = self.rel._relative_position_bucket(slots[None, :] - st.n[:, None], bidirectional=False,
                                                     num_buckets=self.rel.relative_attention_num_buckets,
                                                     max_distance=self.rel.relative_attention_max_distance)
        bias = self.rel.relative_attention_bias(bucket).permute(0, 2, 1)[:, :, None, :]  # [batch, heads, 1, keys]
        bias = bias + torch.where(slots[None, :] <= st.n[:, None], 0.0, low).to(bias.dtype)[:, None, None, :]
        at = st.n.view(-1, 1, 1, 1).expand(-1, self.heads, 1, self.config.d_kv)
        x = self.model.decoder.embed_tokens(st.tok)
        for block, k, v, ck, cv in zip(self.blocks, st.k, st.v, st.cross_k, st.cross_v):
            layer, attn = block.layer[0], block.layer[0].SelfAttention
            h = layer.layer_norm(x)
            k.scatter_(2, at, _heads(attn.k(h), self.heads))
            v.scatter_(2, at, _heads(attn.v(h), self.heads))
            x = x + attn.o(self.self_attention(_heads(attn.q(h), self.heads), k[:, :, :keys], v[:, :, :keys], bias, 1.0))
            layer, attn = block.layer[1], block.layer[1].EncDecAttention
            x = x + attn.o(self.cross_attention(_heads(attn.q(layer.layer_norm(x)), self.heads), ck, cv, st.cross_mask, 1.0))
            x = block.layer[2](x)
        x = self.model.decoder.final_layer_norm(x)
        if self.config.tie_word_embeddings:
            x = x * self.config.d_model ** -0.5
        return self.model.lm_head(x)[:, -1]


class LlamaStep:
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
        """`slots`: the cache slots written, the same for all rows ([tokens], prefill) or one per row
        (a scatter index [batch, kv heads, 1, dim], a step)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        def write(cache: Any, new: Any) -> None:
            cache.index_copy_(2, slots, new) if slots.dim() == 1 else cache.scatter_(2, slots, new)

        cos, sin = self.body.rotary_emb(x, positions)
        for layer, k, v in zip(self.body.layers, st.k, st.v):
            attn, h = layer.self_attn, layer.input_layernorm(x)
            q, kk = apply_rotary_pos_emb(_heads(attn.q_proj(h), self.heads), _heads(attn.k_proj(h), self.kv_heads), cos, sin)
            write(k[rows], kk)
            write(v[rows], _heads(attn.v_proj(h), self.kv_heads))
            x = x + attn.o_proj(attend(q, k[rows, :, :keys], v[rows, :, :keys], mask))
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
        """Token `st.n` of each row: its input at slot `length + n - 1`, position `seen + n - 1`."""
        import torch

        slot = st.length + st.n - 1
        allowed = st.valid[..., :keys] & (torch.arange(keys, device=slot.device) <= slot[:, None, None, None])
        x = self.body.embed_tokens(st.tok)
        mask = torch.where(allowed, 0.0, torch.finfo(x.dtype).min).to(x.dtype)
        at = slot.view(-1, 1, 1, 1).expand(-1, self.kv_heads, 1, st.k[0].shape[-1])
        return self.model.lm_head(self._layers(st, slice(None), x, (st.seen + st.n - 1)[:, None], at, mask, keys))[:, -1]

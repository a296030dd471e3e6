"""Continuous batching (`GreedyLoop.stream`): rows whose sequence ended take the bucket's next prompts,
and every prompt gets the tokens of the plain loop and of HF generate, with EOS forced at chosen
lengths (`script.Lengths`) so that sequences end at different steps."""
from __future__ import annotations

import pytest
from test_eval import _Capture, _tiny

from distill.evaluation import decode_attention
from distill.evaluation.backends import DecodeOptions, HFDecoder
from distill.evaluation.graphs import SEGMENT, GreedyLoop
from distill.evaluation.plan import Batch
from distill.evaluation.script import Lengths
from distill.students import StudentSettings

NEW = SEGMENT + 5  # two segments
EOS = 1


def _bucket(kind: str, count: int, width: int, seed: int = 1):
    """`count` prompts of different lengths, padded to `width` (on the left for a causal model)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(count, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i in range(count):
        n = 2 + (i * 5) % (width - 1)
        span = slice(width - n, None) if kind == "causal" else slice(0, n)
        ids[i, span] = torch.randint(2, 64, (n,), generator=gen)
        mask[i, span] = 1
    return ids, mask


def _generate(model, kind: str, ids, mask, hook: Lengths, rows: list[int]):
    import torch

    process, on_round = hook.processor()
    on_round(rows, [0] * len(rows), ids.shape[1] if kind == "causal" else 1)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=0,
                             logits_processor=[process])
    out = out[:, ids.shape[1]:] if kind == "causal" else out[:, 1:]
    return torch.nn.functional.pad(out, (0, NEW - out.shape[1]), value=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("fused", [False, True], ids=["torch", "kernel"])
def test_stream_gives_every_prompt_the_plain_tokens(kind: str, force: bool, fused: bool) -> None:
    """22 prompts through 6 rows: EOS at lengths from 0 to past the cap (or no EOS: `force`); rows are
    refilled a few at a time, the step never syncs with the host and is captured once per segment.
    `fused`: decode_attention's kernel (Triton's interpreter on CPU), whose spans must follow the refills."""
    import torch

    if fused and not decode_attention.runs(torch.device("cpu")):
        pytest.skip("the fused decode attention on CPU needs Triton and TRITON_INTERPRET=1")
    model = _tiny(kind)
    count, batch = 22, 6
    ids, mask = _bucket(kind, count, 16)
    stops = torch.tensor([(i * 23) % (NEW + 12) for i in range(count)])
    items = [100 + i for i in range(count)]  # sequence numbers: what the hook and the output know a prompt by
    hook = Lengths(torch.cat([torch.zeros(100, dtype=torch.long), stops]), EOS)
    capture = _Capture()
    loop = capture.loop = GreedyLoop(model, max_new_tokens=NEW, pad_token_id=0, force_new_tokens=force, capture=capture,
                                     hook=None if force else hook, fused=fused)
    refills: list[int] = []
    refill = loop._refill
    loop._refill = lambda st, rows, *rest: (refills.append(len(rows)), refill(st, rows, *rest))
    ours = {}
    for numbers, tokens in loop.stream(ids, mask, batch, items=items):
        assert tokens.shape == (len(numbers), NEW)
        ours.update(zip(numbers, tokens))
    assert sorted(ours) == items
    assert len(loop.captured) == len(capture.steps) == 2  # one bucket shape, two segments
    if force:
        assert refills == [batch, batch, count % batch]  # all rows end together: whole batches (the first: the start)
    else:
        assert len(refills) > 3 and min(refills) < batch  # a few rows at a time
    for s in range(0, count, batch):
        rows = list(range(s, min(s + batch, count)))
        plain = loop(ids[rows], mask[rows], torch.tensor([items[r] for r in rows]))
        if not force:
            assert torch.equal(plain, _generate(model, kind, ids[rows], mask[rows], hook, [items[r] for r in rows]))
        for r, want in zip(rows, plain):
            assert torch.equal(ours[items[r]], want), r
    if not force:
        ended = [int(t.eq(EOS).nonzero()[0]) if t.eq(EOS).any() else None for t in (ours[i] for i in items)]
        assert ended == [int(s) if s < NEW else None for s in stops]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_decoder_streams_each_bucket_with_the_tokens_of_generate(kind: str) -> None:
    """`HFDecoder.decode` over two buckets of several batches each and one of fewer prompts than rows:
    continuous batching (the default), batch by batch, and HF generate give every prompt the same text."""
    import torch
    from transformers import ByT5Tokenizer

    tok = ByT5Tokenizer()
    model = _tiny(kind)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    prompts = [f"q{i}: " + "xy"[i % 2] * (i % 7 + (20 if i < 9 else 0)) for i in range(19)]
    hook = Lengths(torch.tensor([(i * 13) % (NEW + 9) for i in range(len(prompts))]), EOS)
    settings = StudentSettings(kind=kind, max_source_len=64)
    plan = [Batch(list(range(s, min(s + 3, 9))), 3, 32) for s in range(0, 9, 3)]
    plan += [Batch(list(range(s, min(s + 4, 17))), 4, 16) for s in range(9, 17, 4)] + [Batch([17, 18], 5, 32)]

    def texts(**options) -> dict[int, str]:
        decoder = HFDecoder(model, tok, settings, DecodeOptions(max_new_tokens=NEW, **options), script=hook)
        return {i: s[0] for indices, samples in decoder.decode(prompts, plan) for i, s in zip(indices, samples)}

    streamed = texts(loop="static")
    assert sorted(streamed) == list(range(len(prompts)))
    assert streamed == texts(loop="static", continuous=False) == texts(loop="generate")


def test_a_stream_made_in_the_background_keeps_order_errors_and_early_stops() -> None:
    from distill.evaluation.backends import _in_background

    import torch

    cpu = torch.device("cpu")
    closed = []

    def items(fail: bool):
        try:
            yield from range(5)
            if fail:
                raise RuntimeError("step failed")
        finally:
            closed.append(fail)

    assert list(_in_background(items(False), cpu)) == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="step failed"):
        list(_in_background(items(True), cpu))
    early = _in_background(items(False), cpu)
    assert next(early) == 0
    early.close()  # the caller stops: the thread stops and the generator is closed before close returns
    assert closed == [False, True, False]

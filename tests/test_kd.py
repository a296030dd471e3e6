"""Distillation from the teacher's distribution: offline top-k kd and on-policy gkd (`distill train
--objective kd|gkd`), the teacher's log-probs through generate and mix, and the tokenizer check."""
from __future__ import annotations

import base64
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import TeacherServer  # noqa: E402
from test_generate import workload  # noqa: E402

from distill.generate import Settings, generate  # noqa: E402
from distill.logprobs import META_KEY, TopK  # noqa: E402
from distill.records import InputError, Record  # noqa: E402
from distill.students import StudentSettings  # noqa: E402
from distill.train import load_config, train  # noqa: E402
from distill.train.data import Collator, aligned_share, load_splits, tokenize  # noqa: E402
from distill.train.kd import generalized_jsd, topk_kl  # noqa: E402
from distill.train.loop import kd_loss, loss_sum  # noqa: E402
from distill.train.tiny import default_tokenizer, tiny_causal, tiny_seq2seq  # noqa: E402
from distill.train.tokenizer import train_tokenizer  # noqa: E402
from distill.train.vocab import check_shared_vocab  # noqa: E402


# ---------------------------------------------------------------- the losses
def test_topk_kl_with_the_data_one_hot_is_the_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(7, 11)
    labels = torch.randint(0, 11, (7,))
    ids = torch.zeros(7, 3, dtype=torch.long)
    ids[:, 0] = labels
    lp = torch.full((7, 3), float("-inf"))
    lp[:, 0] = 0.0
    assert topk_kl(logits, ids, lp).item() == pytest.approx(F.cross_entropy(logits, labels, reduction="sum").item(), rel=1e-6)


def test_topk_kl_against_a_hand_computation() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
    q = [math.exp(x) / sum(math.exp(y) for y in (1.0, 0.0, -1.0, 2.0)) for x in (1.0, 0.0, -1.0, 2.0)]
    # Teacher: token 3 at 0.5, token 0 at 0.3, the other two share 0.2 as one bucket.
    got = topk_kl(logits, torch.tensor([[3, 0]]), torch.tensor([[math.log(0.5), math.log(0.3)]]))
    want = 0.5 * math.log(0.5 / q[3]) + 0.3 * math.log(0.3 / q[0]) + 0.2 * math.log(0.2 / (q[1] + q[2]))
    assert got.item() == pytest.approx(want, rel=1e-5)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_against_a_hand_computation(beta: float) -> None:
    s_logits, t_logits = [0.2, -1.0, 1.5], [1.0, 0.5, -0.5]
    softmax = lambda xs: [math.exp(x) / sum(math.exp(y) for y in xs) for x in xs]  # noqa: E731
    s, t = softmax(s_logits), softmax(t_logits)
    if beta == 0:
        want = _kl(t, s)
    elif beta == 1:
        want = _kl(s, t)
    else:
        m = [beta * a + (1 - beta) * b for a, b in zip(t, s)]
        want = beta * _kl(t, m) + (1 - beta) * _kl(s, m)
    got = generalized_jsd(torch.tensor([s_logits, s_logits]), torch.tensor([t_logits, t_logits]), beta)
    assert got.item() == pytest.approx(2 * want, rel=1e-5)
    assert generalized_jsd(torch.tensor([t_logits]), torch.tensor([t_logits]), beta).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_kd_with_a_one_hot_teacher_equals_sft_on_a_model(kind: str) -> None:
    """The equivalence through the whole path: collator, target positions, the model's logits."""
    torch.manual_seed(0)
    tok = default_tokenizer()
    model = (tiny_seq2seq if kind == "seq2seq" else tiny_causal)(tok, d_model=32, layers=1, heads=2)
    settings = StudentSettings(kind=kind, cues={}, max_source_len=64, max_target_len=64)
    rows = [{"input": f"Q: {a} plus 3?\n", "target": f"{a} + 3 = {a + 3}"} for a in (4, 15, 27)]
    examples = tokenize(rows, tok, settings)
    for e in examples[:2]:  # an explicit one-hot teacher on two of them (k=4: 3 empty slots), none on the third
        target = e["tgt"] if kind == "seq2seq" else [t for t in e["labels"] if t != -100]
        e["kd_top"] = [[t, 0, 0, 0] for t in target]
        e["kd_lp"] = [[0.0, float("-inf"), float("-inf"), float("-inf")] for _ in target]
    collate = Collator(kind, tok.pad_token_id, decoder_start_id=getattr(model.config, "decoder_start_token_id", None),
                       topk=4)
    batch = collate(examples)
    assert batch["kd_ids"].shape == (*batch["labels"].shape, 4)
    sft = loss_sum(model, batch)
    assert kd_loss(0.0)(model, batch).item() == pytest.approx(sft.item(), rel=1e-5)
    assert kd_loss(0.3)(model, batch).item() == pytest.approx(sft.item(), rel=1e-5)


def test_topk_is_stored_compactly_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    ids, top = rng.integers(0, 32000, 50), rng.integers(0, 32000, (50, 8))
    lp = np.log(rng.dirichlet(np.ones(8), 50) * 0.9)
    stored = TopK(ids, top, lp).encode()
    back = TopK.decode(json.loads(json.dumps(stored)))
    assert back.ids.dtype == np.int32 and back.top_logprobs.dtype == np.float16 and back.k == 8
    assert (back.ids == ids).all() and (back.top_ids == top).all()
    assert np.allclose(back.top_logprobs, lp, atol=2e-3)
    assert len(base64.b64decode(stored["top_logprobs"])) == 50 * 8 * 2  # two bytes a value
    assert len(base64.b64decode(stored["top_ids"])) == 50 * 8 * 4
    with pytest.raises(ValueError, match="meta.logprobs"):
        TopK.decode({**stored, "k": 3})


# ---------------------------------------------------------------- the tokenizer check
def test_different_vocabularies_are_refused_before_a_model_is_loaded(tmp_path: Path, monkeypatch) -> None:
    a = train_tokenizer(["one two three four"] * 20, vocab_size=300)
    b = train_tokenizer(["five six seven eight nine"] * 20, vocab_size=300)
    check_shared_vocab(a, a, "t", "s")
    with pytest.raises(InputError, match="different vocabularies.*one tokenizer"):
        check_shared_vocab(a, b, "hf:t", "s")

    teacher = tmp_path / "teacher"
    b.save_pretrained(teacher)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"input": f"Q {i}\n", "target": f"A {i}"}) + "\n" for i in range(4)))
    import distill.train as training

    def no_model(*_, **__):
        raise AssertionError("a model was loaded before the tokenizer check")

    monkeypatch.setattr(training, "load_model", no_model)
    config = load_config(None, {"student": "tiny-t5", "data": str(data), "output_dir": str(tmp_path / "run"),
                                "objective": "gkd", "teacher": f"hf:{teacher}", "trackers": "none"})
    with pytest.raises(InputError, match="different vocabularies"):
        train(config)
    kd = load_config(None, {"student": "tiny-t5", "data": str(data), "output_dir": str(tmp_path / "run2"),
                            "objective": "kd", "trackers": "none"})
    with pytest.raises(InputError, match="--logprobs"):  # no teacher log-probs in the data
        train(kd)
    missing = load_config(None, {"student": "tiny-t5", "data": str(data), "output_dir": str(tmp_path / "run3"),
                                 "objective": "gkd", "teacher": f"hf:{tmp_path / 'nowhere'}", "trackers": "none"})
    with pytest.raises(InputError, match="nowhere"):
        train(missing)
    with pytest.raises(InputError, match="needs --teacher"):
        load_config(None, {"student": "tiny-t5", "data": str(data), "output_dir": "x", "objective": "gkd"})


# ---------------------------------------------------------------- generate -> mix -> train, offline kd
@pytest.fixture(scope="module")
def kd_mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server returning top-3 token ids (ByT5 ids: byte + 3, the tiny students' default tokenizer)."""
    from distill.mix import mix

    tmp = tmp_path_factory.mktemp("kd")
    items, script = workload(24)  # cot's first rationale is right: one sample a question keeps every one
    with TeacherServer(script) as server:
        generate(items, "cot", "openai:t", tmp / "gen.jsonl", teacher_options={"base_url": server.url},
                 settings=Settings(logprobs=3), concurrency=4, workers=1)
    mix([tmp / "gen.jsonl"], tmp / "mtd", decontaminate=(), val_fraction=0.1)
    return tmp


def test_server_logprobs_reach_the_records_and_the_arrow_columns(kd_mix: Path) -> None:
    import datasets

    rec = Record.from_dict(json.loads((kd_mix / "gen.jsonl").read_text().splitlines()[0]))
    top = TopK.decode(rec.meta[META_KEY])
    assert top.k == 3 and (top.ids == np.frombuffer(rec.meta["raw"].encode(), dtype=np.uint8) + 3).all()
    assert np.allclose(np.exp(top.top_logprobs.astype(np.float32)).sum(1), 0.9, atol=1e-2)
    train_split = datasets.load_from_disk(str(kd_mix / "mtd"))["train"]
    assert str(train_split.features["kd_top_logprobs"].feature.dtype) == "float16"
    assert str(train_split.features["kd_top_ids"].feature.dtype) == "int32"
    row = train_split[0]
    assert len(row["kd_top_ids"]) == 3 * len(row["kd_ids"]) == len(row["kd_top_logprobs"])
    splits = load_splits(kd_mix / "mtd")
    assert all("kd" in r for r in splits.train)
    # The target is the teacher's text (trimmed): every token but the student's EOS carries the teacher's top-k.
    settings = StudentSettings(kind="seq2seq", cues={}, max_source_len=256, max_target_len=256)
    examples = tokenize(splits.train, default_tokenizer(), settings)
    assert all(len(e["kd_top"]) == len(e["tgt"]) - 1 for e in examples)
    assert aligned_share(examples) > 0.95


def test_token_strings_instead_of_ids_are_one_clear_error(tmp_path: Path) -> None:
    from distill.teachers.base import TeacherError
    from distill.teachers.openai_compat import parse_choices

    body = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop",
                         "logprobs": {"content": [{"token": "hi", "logprob": -0.1, "top_logprobs": []}]}}]}
    with pytest.raises(TeacherError, match="not an id"):
        parse_choices(json.dumps(body).encode(), 1, logprobs=2)
    with pytest.raises(TeacherError, match="no logprobs"):
        parse_choices(json.dumps({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}).encode(), 1,
                      logprobs=2)


def _metrics(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _tiny(tmp: Path, data: Path, **over: object):
    values = {"student": "tiny-t5", "data": str(data), "output_dir": str(tmp), "lr": 3e-3, "batch_size": 8,
              "max_steps": 6, "log_every": 1, "save_every": 3, "warmup_ratio": 0.0, "trackers": "none",
              "max_target_len": 96, "tiny": {"d_model": 32, "layers": 1, "heads": 2}, **over}
    return load_config(None, values)


@pytest.mark.slow
@pytest.mark.parametrize("student", ["tiny-t5", "tiny-llama"])
def test_offline_kd_trains_on_the_teachers_top_k(tmp_path: Path, kd_mix: Path, student: str) -> None:
    out = train(_tiny(tmp_path / "kd", kd_mix / "mtd", student=student, objective="kd", kd_alpha=0.1, max_steps=12,
                      save_every=0, tiny={"d_model": 64, "layers": 2, "heads": 4}))
    losses = _metrics(out)
    assert losses[12] < 0.8 * losses[1]
    assert (out / "model.safetensors").is_file()


# ---------------------------------------------------------------- on-policy gkd
@pytest.mark.slow
@pytest.mark.parametrize("student", ["tiny-t5", "tiny-llama"])
def test_gkd_trains_against_a_frozen_teacher_and_resumes_exactly(tmp_path: Path, kd_mix: Path, student: str) -> None:
    data = kd_mix / "mtd"
    teacher = train(_tiny(tmp_path / "teacher", data, student=student, max_steps=4))
    # The student reads the teacher's tokenizer (ByT5 bytes here) and samples its own targets.
    gkd = dict(student=student, objective="gkd", teacher=f"hf:{teacher}", beta=0.5, on_policy_fraction=0.5,
               gkd_max_new_tokens=24, tokenizer=str(teacher), tiny={"d_model": 32, "layers": 1, "heads": 2, "dropout": 0.1})
    full = train(_tiny(tmp_path / "a", data, **gkd))
    a = _metrics(full)
    assert all(v > 0 for v in a.values()) and a[6] < a[1]

    def crash(step: int, _: dict) -> None:
        if step == 5:
            raise KeyboardInterrupt

    config = _tiny(tmp_path / "b", data, **gkd)
    with pytest.raises(KeyboardInterrupt):
        train(config, on_step=crash)
    b = _metrics(train(config, resume=True))
    for step in range(1, 7):
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), step


def _student(kind: str):
    torch.manual_seed(0)
    tok = default_tokenizer()
    model = (tiny_seq2seq if kind == "seq2seq" else tiny_causal)(tok, d_model=32, layers=2, heads=2).eval()
    prompts = [[5 + (7 * i + j) % 200 for j in range(n)] for i, n in enumerate((3, 9, 6))]
    return tok, model, prompts


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_gkd_sampling_near_temperature_zero_is_greedy_generate(kind: str) -> None:
    """The static-cache sampler, through OnPolicy: at a vanishing temperature the Gumbel noise cannot
    move the argmax, so the samples are `generate(do_sample=False)`'s tokens, up to and including EOS."""
    from distill.train.gkd import OnPolicy

    tok, model, prompts = _student(kind)
    gkd = OnPolicy(None, kind, beta=0.5, fraction=1.0, max_new_tokens=12, temperature=1e-6, pad_id=tok.pad_token_id,
                   eos_id=tok.eos_token_id, seed=0, student=model)
    got = gkd.sample(prompts)
    assert gkd._sampler is not None  # the static loop, not generate
    for prompt, sample in zip(prompts, got):
        out = model.generate(input_ids=torch.tensor([prompt]), do_sample=False, max_new_tokens=12,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[0].tolist()
        want = out[1:] if kind == "seq2seq" else out[len(prompt):]
        want = want[: want.index(tok.eos_token_id) + 1] if tok.eos_token_id in want else want
        assert sample == want


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_sampler_with_a_fixed_noise_follows_a_hand_written_gumbel_loop(kind: str) -> None:
    """Fixed Gumbel noise per step: the loop's tokens are argmax(top-p(logits / T) - noise) of the
    model's own full forward passes (temperature 0.7, HF's TopPLogitsWarper at 0.8)."""
    from transformers.generation.logits_process import TopPLogitsWarper

    from distill.train.sampling import SampleLoop

    tok, model, prompts = _student(kind)
    prompts, new, temperature = prompts[1:2], 10, 0.7
    gen = torch.Generator().manual_seed(3)
    noises = [torch.empty(1, model.config.vocab_size).exponential_(generator=gen).log() for _ in range(new)]
    drawn = iter(noises)
    loop = SampleLoop(model, temperature=temperature, top_p=0.8, eos_token_id=tok.eos_token_id,
                      noise=lambda logits: next(drawn), max_new_tokens=new, pad_token_id=tok.pad_token_id,
                      force_new_tokens=True)
    got = loop(torch.tensor(prompts), torch.ones(1, len(prompts[0]), dtype=torch.long))[0].tolist()
    warp = TopPLogitsWarper(0.8)
    ids, want = torch.tensor(prompts), []
    start = model.config.decoder_start_token_id if kind == "seq2seq" else None
    with torch.no_grad():
        for noise in noises:
            if kind == "seq2seq":
                logits = model(input_ids=ids, decoder_input_ids=torch.tensor([[start] + want])).logits[:, -1]
            else:
                logits = model(input_ids=torch.tensor([prompts[0] + want])).logits[:, -1]
            choice = (warp(None, logits / temperature) - noise).index_fill(1, torch.tensor([tok.eos_token_id]),
                                                                             float("-inf"))  # force_new_tokens
            want.append(int(choice.argmax(-1)))
    assert got == want


def test_sampler_draws_from_the_tempered_distribution() -> None:
    """4,000 first tokens of one prompt (seeded): their frequencies are softmax(logits / 1.5)'s, far
    from the untempered softmax's (the head scaled up so that the distribution is peaked)."""
    from distill.train.sampling import StudentSampler

    tok, model, prompts = _student("causal")
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
        logits = model(input_ids=torch.tensor([prompts[0]])).logits[0, -1]
    sampler = StudentSampler(model, kind="causal", max_new_tokens=1, temperature=1.5, pad_id=tok.pad_token_id,
                             eos_id=tok.eos_token_id, force_length=False)
    torch.manual_seed(0)
    freq = torch.bincount(sampler([prompts[0]] * 4000)[:, 0], minlength=logits.shape[0]).float() / 4000
    tv = lambda p: 0.5 * (freq - p).abs().sum().item()  # noqa: E731
    assert tv((logits / 1.5).softmax(-1)) < 0.08  # 0.057 here: the noise of 4,000 draws over ~380 tokens
    assert tv(logits.softmax(-1)) > 3 * tv((logits / 1.5).softmax(-1))


def test_hf_teacher_keeps_the_top_k_of_its_own_distribution(tmp_path: Path) -> None:
    """Greedy decoding: the sampled token is the top-1, and the stored log-probs are the model's own
    (a teacher-forced forward pass over prompt + completion gives the same numbers)."""
    import asyncio

    from distill.teachers.base import Request
    from distill.teachers.local import HFTeacher

    torch.manual_seed(0)
    tok = default_tokenizer()
    tiny_causal(tok, d_model=32, layers=1, heads=2).save_pretrained(tmp_path / "t")
    tok.save_pretrained(tmp_path / "t")
    teacher = HFTeacher(str(tmp_path / "t"), device="cpu", dtype="float32")
    messages = [{"role": "user", "content": "Question: 2 + 3?\n"}]
    [[c]] = teacher._generate([Request(messages, temperature=0.0, max_tokens=6, logprobs=4)])
    top = TopK.decode(c.logprobs)
    assert top.k == 4 and 1 <= len(top.ids) <= 6
    assert (top.ids == top.top_ids[:, 0]).all()
    prompt = tok(teacher.render(messages), return_tensors="pt")["input_ids"]
    full = torch.cat([prompt, torch.tensor([top.ids.tolist()])], dim=1)
    with torch.no_grad():
        logp = teacher.model(full).logits[0, prompt.shape[1] - 1:-1].log_softmax(-1)
    want = logp.topk(4, dim=-1)
    assert (want.indices.numpy() == top.top_ids).all()
    assert np.allclose(want.values.numpy(), top.top_logprobs.astype(np.float32), atol=1e-2)
    asyncio.run(teacher.aclose())


def test_train_options_reach_the_config() -> None:
    from distill.stages.train import TrainOptions, resolve_config

    config = resolve_config(TrainOptions(student="tiny-t5", data="d", output="o", objective="gkd", teacher="hf:t",
                                         beta=0.3, on_policy_fraction=0.5, kd_alpha=0.2))
    assert (config.objective, config.teacher, config.beta, config.on_policy_fraction, config.kd_alpha) == \
        ("gkd", "hf:t", 0.3, 0.5, 0.2)
    with pytest.raises(InputError, match="'beta'"):
        resolve_config(TrainOptions(student="tiny-t5", data="d", output="o", beta=1.5))


@pytest.mark.slow
def test_kd_gpu_benchmark_smoke_runs() -> None:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "kd_gpu.py"), "--smoke"], capture_output=True,
                          text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    for row in ("| gkd, baseline (generate, full logits) |", "| gkd, ours |", "| sft |", "| kd (top-20, alpha 0.1) |"):
        assert row in done.stdout
    assert "samples/s" in done.stdout and "target tokens/s" in done.stdout


def test_cli_trains_with_kd_and_refuses_gkd_without_a_teacher(tmp_path: Path, kd_mix: Path) -> None:
    from click.testing import CliRunner

    from distill.cli import main

    common = ["train", "--student", "tiny-t5", "--data", str(kd_mix / "mtd"), "--max-steps", "2", "--save-every", "0",
              "--set", "tiny.d_model=32", "--set", "tiny.layers=1", "--set", "tiny.heads=2", "--set", "trackers=none"]
    done = CliRunner().invoke(main, common + ["--objective", "kd", "--kd-alpha", "0.1", "-o", str(tmp_path / "kd")])
    assert done.exit_code == 0, done.output
    assert "top-3 covers" in done.output and (tmp_path / "kd" / "model.safetensors").is_file()
    refused = CliRunner().invoke(main, common + ["--objective", "gkd", "-o", str(tmp_path / "gkd")])
    assert refused.exit_code != 0 and "needs --teacher hf:PATH" in refused.output
    assert not (tmp_path / "gkd").exists()

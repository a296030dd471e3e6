"""GPU benchmark of `distill eval`: GSM8K test x 3 thoughts, 256 forced new tokens per sequence
(`--lengths forced`) or sequences that end at realistic lengths (`--lengths realistic`).

Two random-weight shapes, CodeT5-large (770M, seq2seq) and LLaMA-2-7B (causal), bf16. For each:
- naive baseline: HF `generate` on fixed-count batches sorted by length, dynamic cache, no compile;
  timed on a few evenly spaced batches and scaled to all of them (keeps the run inside 10 minutes);
- `graph`: `distill.evaluation.evaluate_model` end to end (decode + execute PoT + solve EoT + score)
  with `GreedyLoop`: length buckets chosen by `plan_batches`, one batch size each (from free memory), a static KV cache,
  the decode step captured in CUDA graphs (one per bucket and 64-step segment; no compiler), each bucket
  decoded with continuous batching (a row whose sequence ended takes the bucket's next prompt);
- `eager`: the same without CUDA graphs (huge batches, launch overhead hidden behind the GPU work);
- `static` (not run by default): `graph` batch by batch, without continuous batching.
`--lengths realistic`: each sequence ends (EOS, barred before) at a length drawn (fixed seed) from
teacher rationale lengths in the benchmark's tokens, capped at 256: the recorded PoT programs
(`<lengths-data>/recorded/*.jsonl`) for PoT, GSM8K train solutions (`<lengths-data>/gsm8k/train.jsonl`,
calculator annotations dropped, `#### x` written `The answer is x.`) for EoT and CoT; every run,
naive included (a logits processor), is forced by the same `distill.evaluation.script.Lengths`.
`--lengths forced,realistic` runs both; the table says which, with the mean new tokens per sequence.
Runs go mode by mode (`--modes`, fast path first); one not started within `--deadline` seconds is
skipped, and the table in `--out` is rewritten after every run, so a cut-off run keeps what it has.
No weights or tokenizer files can be downloaded: the tokenizer is a BPE trained here on the GSM8K
text (token counts close to LLaMA's on this text); generated ids beyond its vocabulary decode to nothing.

    python benchmarks/eval_gpu.py --data .bench/gsm8k_test.jsonl --out results/        # GPU, ~5 minutes
    python benchmarks/eval_gpu.py --smoke --out /tmp/eval_smoke                         # CPU, every mode
    python benchmarks/eval_gpu.py --smoke --lengths realistic --out /tmp/eval_smoke     # CPU, realistic lengths

`--thoughts tir` (issue 20's bar): GSM8K test x tir, the LLaMA-2-7B shape, 256 generated tokens per
sequence, the code blocks forced (`distill.evaluation.script.Script`): every 64 generated tokens a
row writes ```` ```python ````, `print(<number>)`, ```` ``` ```` and the ```` ```output ```` marker (each
row's blocks shifted by its index mod 16, as sequences of real models do not stop in step), so it
runs 3 cells (all so far, in the sandbox) and takes 3 outputs back. Timed in the same run: the plain
static-loop decode of the same prompts and number of generated tokens, then `evaluate_model` end to
end for tir (decode with the rounds + checking the traces); the bar is tir <= 1.25x plain.

    python benchmarks/eval_gpu.py --thoughts tir --out benchmarks/results   # GPU, ~3 minutes
    python benchmarks/eval_gpu.py --thoughts tir --smoke --out /tmp/tir     # CPU, tiny shape
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.cues import student_input  # noqa: E402
from distill.data import load  # noqa: E402
from distill.evaluation import decode_attention, evaluate_model  # noqa: E402
from distill.evaluation.backends import DecodeOptions, HFDecoder  # noqa: E402
from distill.evaluation.plan import Batch  # noqa: E402
from distill.evaluation.script import Lengths, Script  # noqa: E402
from distill.students import StudentSettings  # noqa: E402
from solvers.tir import STOP  # noqa: E402

THOUGHTS = ("pot", "eot", "cot")
MODES = ("graph", "naive", "eager")
RUNNABLE = MODES + ("static",)
LENGTHS = ("forced", "realistic")
FULL_NEW = 256  # new tokens per sequence at full size (the realistic lengths' cap)
SHAPES = {  # name: (kind, config kwargs, naive batch, fast max batch)
    "770m": ("seq2seq", dict(vocab_size=32100, d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_decoder_layers=24,
                             num_heads=16, feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0,
                             eos_token_id=2), 1024, 4096),
    "7b": ("causal", dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                          pad_token_id=0, bos_token_id=1, eos_token_id=2), 128, 512),
}
SMOKE = {
    "770m": dict(vocab_size=32100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4),
    "7b": dict(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4),
}


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def build_model(shape: str, smoke: bool, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    kind, kwargs, _, _ = SHAPES[shape]
    if smoke:
        kwargs = {**kwargs, **SMOKE[shape]}
    config = (T5Config if kind == "seq2seq" else LlamaConfig)(**kwargs)
    cls = T5ForConditionalGeneration if kind == "seq2seq" else LlamaForCausalLM
    with torch.device(device):
        model = cls(config).to(dtype)
    if kind == "seq2seq":  # T5's unit-variance init overflows bf16 over 24 layers; keep activations finite
        for p in model.parameters():
            p.data.mul_(0.05)
    return model.eval(), kind


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def naive(model, tok, settings, prompts: list[str], batch: int, new: int, n_timed: int,
          lengths: Lengths | None = None, tokens: int | None = None) -> dict:
    """HF generate, fixed-count batches sorted by length, dynamic cache: n_timed batches, scaled.
    `lengths`: sequences end there (else `new` forced tokens each); `tokens`: all new tokens."""
    opts = DecodeOptions(max_new_tokens=new, loop="generate", force_new_tokens=lengths is None)
    decoder = HFDecoder(model, tok, settings, opts, script=lengths)
    lengths = [len(ids) for ids in tok(prompts, truncation=True, max_length=settings.max_source_len)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    plan = [Batch(order[s:s + batch], batch, lengths[order[s]]) for s in range(0, len(order), batch)]
    picks = sorted({round(i * (len(plan) - 1) / max(n_timed - 1, 1)) for i in range(min(n_timed, len(plan)))})
    list(decoder.decode(prompts, [Batch(plan[0].indices[:2], 2, plan[0].length)]))  # warm-up
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    list(decoder.decode(prompts, [plan[i] for i in picks]))
    sync()
    timed = time.perf_counter() - start
    seconds = timed * len(plan) / len(picks)
    return {"seconds": seconds, "timed_batches": len(picks), "batches": len(plan), "batch": batch,
            "tokens_per_s": (tokens or len(prompts) * new) / seconds, "peak_gib": _peak()}


def fast(model, tok, settings, data: str, limit: int | None, new: int, max_batch: int, graphs: bool, workers: int,
         thoughts: tuple[str, ...] = THOUGHTS, script: Script | Lengths | None = None, continuous: bool = True,
         tokens: int | None = None, attention: str = "auto", profile: bool = False, expected: float | None = None) -> dict:
    """`script`: forced tokens (a `Lengths`: sequences end there, else `new` forced tokens each); `tokens`: all new tokens.
    `profile`: the run under torch.profiler, its GPU time by kind of kernel printed (`gpu_time`); `expected`: the
    plan's prior of mean new tokens (`DecodeOptions.expected_new_tokens`)."""
    opts = DecodeOptions(max_new_tokens=new, max_batch=max_batch, loop="static", compile=graphs,
                         force_new_tokens=not isinstance(script, Lengths), continuous=continuous,
                         output_tokens=TIR_OUTPUT_TOKENS, cell_workers=workers, attention=attention,
                         expected_new_tokens=expected)
    decoder = HFDecoder(model, tok, settings, opts, script=script)
    decoding = [0.0]  # seconds spent inside the decoder (the rest: prompts, checking not overlapped, reports)
    decode = decoder.decode

    def timed_decode(*args, **kwargs):
        batches = decode(*args, **kwargs)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            decoding[0] += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    decoder.decode = timed_decode
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out, _profiler(profile) as prof:
        sync()
        start = time.perf_counter()
        report = evaluate_model("random", data, out, thoughts=",".join(thoughts), vote=len(thoughts) > 1, options=opts,
                                limit=limit, decoder=decoder, overwrite=True, workers=workers, show_progress=False)
        seconds = time.perf_counter() - start
        preds = [json.loads(line) for line in open(Path(out) / "predictions.jsonl")]
    overall = report["datasets"]["overall"]
    loop = decoder.loop
    row = {"seconds": seconds, "decode_seconds": decoding[0], "sequences": len(preds), "attention": attention, "expected": expected,
           "fused": loop.arch.fused,
           "batch": "/".join(str(b) for b, _ in loop.shapes), "shapes": loop.shapes, "graphs": len(loop.captured),
           "tokens_per_s": (tokens or len(preds) * new) / seconds, "peak_gib": _peak(), "failures": overall["failures"]}
    if prof is not None:
        row |= {"gpu": gpu_time(prof, seconds)}
    if script is not None:
        cells = [sum("output" in t for t in p["meta"].get("turns", [])) for p in preds]
        row |= {"cells_per_sequence": sum(cells) / max(len(cells), 1)}
    return row


KINDS = (("decode attention", ("_decode",)), ("prefill attention", ("flash", "fmha", "attention", "softmax")),
         ("GEMM", ("gemm", "nvjet", "cutlass", "sm90", "xmma", "splitk")), ("copy", ("copy", "memcpy", "memset", "index")))


PREFILL = "distill.prefill"


@contextlib.contextmanager
def _profiler(on: bool):
    """torch.profiler over the block (CUDA kernels only; prefills marked), or None."""
    if not on:
        yield None
        return
    from torch.profiler import ProfilerActivity, profile, record_function

    from distill.evaluation import steps

    saved = {cls: cls.prefill for cls in (steps.T5Step, steps.LlamaStep)}

    def marked(fn):
        def prefill(*args, **kwargs):
            with record_function(PREFILL):
                return fn(*args, **kwargs)
        return prefill

    for cls, fn in saved.items():
        cls.prefill = marked(fn)
    try:
        threads = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)  # the decode runs in a thread
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU], experimental_config=threads) as prof:
            yield prof
    finally:
        for cls, fn in saved.items():
            cls.prefill = fn


def gpu_time(prof, wall: float) -> dict:
    """Seconds of GPU kernel time by kind (`KINDS`, by kernel name; the rest: elementwise and others),
    inside prefills, in all; the busiest kernels printed."""
    cuda, averages = torch.autograd.DeviceType.CUDA, prof.key_averages()
    kernels = [e for e in averages if e.device_type == cuda and e.key != PREFILL]  # not the range's GPU span
    kinds: dict[str, float] = {}
    for e in kernels:
        name = e.key.lower()
        kind = next((k for k, words in KINDS if any(w in name for w in words)), "elementwise, other")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_device_time_total / 1e6
    prefill = sum(e.device_time_total for e in averages if e.key == PREFILL and e.device_type != cuda) / 1e6
    busy = sum(kinds.values())
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:12]:
        print(f"  {e.self_device_time_total / 1e6:7.2f} s {e.count:8d}x  {e.key[:110]}")
    print(f"  GPU busy {busy:.1f} s of {wall:.1f} s wall; prefills {prefill:.1f} s; " +
          ", ".join(f"{k} {v:.1f} s" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])), flush=True)
    return {"busy_s": round(busy, 2), "prefill_s": round(prefill, 2)} | {k: round(v, 2) for k, v in kinds.items()}


def rationale_lengths(tok, root: Path) -> dict[str, list[int]]:
    """Teacher rationale lengths in `tok`'s tokens, capped at FULL_NEW, per thought: the recorded PoT
    programs for PoT; GSM8K train human solutions for EoT and CoT (no EoT teacher output is recorded)."""
    programs = [_program(row["generated"]) for path in sorted((root / "recorded").glob("*.jsonl"))
                for row in map(json.loads, path.open(encoding="utf-8")) if "generated" in row]
    solutions = [_solution(json.loads(line)["answer"]) for line in (root / "gsm8k" / "train.jsonl").open(encoding="utf-8")]
    count = lambda texts: [min(len(ids), FULL_NEW) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    return {"pot": count(programs), "eot": count(solutions), "cot": count(solutions)}


def _program(generated) -> str:
    """A recorded program: the first of a one-program list (or of its Python literal); a zero-shot
    program without the prompt's scaffold that the record repeats (imports, the question, `def solver():`)."""
    if isinstance(generated, list) or generated.lstrip().startswith("["):
        generated = (generated if isinstance(generated, list) else ast.literal_eval(generated))[0]
    _, scaffold, body = generated.partition("# Let's think step by step")
    return body.split("\n", 1)[-1] if scaffold else generated


def _solution(answer: str) -> str:
    """A GSM8K solution as a CoT rationale: no calculator annotations, `#### 72` as `The answer is 72.`"""
    return re.sub(r"\n?#### *(.+)$", r"\nThe answer is \1.", re.sub(r"<<[^>]*>>", "", answer.strip()))


def draw_stops(pools: dict[str, list[int]], thoughts: list[str], new: int, seed: int = 0) -> torch.Tensor:
    """Per sequence (of thought `thoughts[i]`), the index of its EOS among its new tokens: a rationale
    length drawn from its thought's pool, scaled by new / FULL_NEW (smoke runs), below `new`."""
    rng = random.Random(seed)
    return torch.tensor([min(-(-rng.choice(pools[t]) * new // FULL_NEW), new - 1) for t in thoughts])


TIR_PERIOD, TIR_PHASES, TIR_OUTPUT_TOKENS = 64, 16, 16


def tir_block(tok, number: int) -> list[int]:
    return tok(f"\n```python\nprint({number})\n```\n{STOP}", add_special_tokens=False)["input_ids"]


def tir_script(tok, new: int, period: int) -> Script:
    """Row r (mod TIR_PHASES) ends a code block and the marker at generated tokens period - r, 2 period - r, ...;
    the other tokens are the model's."""
    table = torch.full((TIR_PHASES, new), -1, dtype=torch.long)
    for r in range(TIR_PHASES):
        for k, end in enumerate(range(period - r, new - period + 1, period)):
            block = tir_block(tok, (r * 37 + k * 11) % 1000)
            table[r, end - len(block):end] = torch.tensor(block)
    return Script(table)


def plain_decode(model, tok, settings, prompts: list[str], new: int, max_batch: int, graphs: bool) -> dict:
    """The static loop's plain decode of `prompts` (no tools), `new` tokens each: the TIR baseline."""
    opts = DecodeOptions(max_new_tokens=new, max_batch=max_batch, loop="static", compile=graphs, force_new_tokens=True)
    decoder = HFDecoder(model, tok, settings, opts)
    sync()
    start = time.perf_counter()
    n = sum(len(indices) for indices, _ in decoder.decode([str(p) for p in prompts]))
    sync()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "decode_seconds": seconds, "sequences": n, "batch": "/".join(str(b) for b, _ in decoder.loop.shapes),
            "graphs": len(decoder.loop.captured), "tokens_per_s": n * new / seconds, "peak_gib": _peak()}


def run_tir(args, device: str, dtype: torch.dtype) -> None:
    """Issue 20's bar: the plain decode, then tir end to end, of GSM8K test x tir at the 7B shape."""
    new, period, limit = (96, 32, 8) if args.smoke else (256, TIR_PERIOD, None)
    questions = load(args.data, limit=limit).records
    corpus = [q.question for q in load(args.data).records] + [student_input("", "tir")]
    corpus += [f"\n```python\nprint({i})\n```\n{STOP}\n{i}\n```\n" for i in range(1000)]
    tok = train_tokenizer(corpus, SHAPES["7b"][1]["vocab_size"])
    model, kind = build_model("7b", args.smoke, device, dtype)
    settings = StudentSettings(kind=kind, max_source_len=512)
    probe = HFDecoder(model, tok, settings, DecodeOptions(max_new_tokens=new))
    prompts = [probe.prompt(q.question, "tir") for q in questions]
    max_batch = SHAPES["7b"][3] if not args.smoke else 4
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for mode in ("plain", "tir"):
        row: dict = {"shape": "7b", "mode": mode}
        rows.append(row)
        try:
            if mode == "plain":
                row |= plain_decode(model, tok, settings, prompts, new, max_batch, device == "cuda")
            else:
                row |= fast(model, tok, settings, args.data, limit, new, max_batch, device == "cuda", args.workers,
                            thoughts=("tir",), script=tir_script(tok, new, period))
        except Exception as exc:  # noqa: BLE001 - keep the other run's figures
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        print(f"[7b {mode}] {json.dumps(row)}", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
        (out / "eval_gpu_tir.json").write_text(json.dumps({"device": _device(), "torch": torch.__version__, "new": new,
                                                           "period": period, "rows": rows}, indent=2))
        (out / "eval_gpu_tir_table.md").write_text(tir_markdown(rows, new, period))
    print(tir_markdown(rows, new, period))


def tir_markdown(rows: list[dict], new: int, period: int) -> str:
    import transformers

    lines = [f"{_device()}, torch {torch.__version__}, transformers {transformers.__version__}; GSM8K test x tir, "
             f"LLaMA-2-7B shape (random weights), {new} generated tokens per sequence, a forced code block every "
             f"{period} (issue 20's bar: tir <= 1.25x plain)", "",
             "| run | batch | sequences | cells per sequence | seconds (decoding) | tokens/s | peak GiB | x plain |",
             "|---|---|---|---|---|---|---|---|"]
    base = next((r["seconds"] for r in rows if r["mode"] == "plain" and "seconds" in r), None)
    names = {"plain": "plain decode, static loop (CUDA graphs on CUDA)",
             "tir": "tir end to end: decode with the cells run between rounds, check the traces"}
    for r in rows:
        if "seconds" not in r:
            lines.append(f"| {r['mode']}: {r.get('error', 'not run')} | | | | | | | |")
            continue
        ratio = f"{r['seconds'] / base:.2f}x" if base else "-"
        lines.append(f"| {names[r['mode']]} | {r['batch']} | {r['sequences']} | {r.get('cells_per_sequence', 0):.2f} "
                     f"| {r['seconds']:.1f} ({r['decode_seconds']:.1f}) | {r['tokens_per_s']:,.0f} | {r['peak_gib']:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


def _peak() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/gsm8k/test.jsonl")
    ap.add_argument("--shapes", default="770m,7b")
    ap.add_argument("--modes", default=",".join(MODES), help="runs, in this order, of graph, naive, eager, static")
    ap.add_argument("--lengths", default="forced", help="forced (256 new tokens), realistic, or both: forced,realistic")
    ap.add_argument("--lengths-data", default="../shared/data", help="recorded/*.jsonl and gsm8k/train.jsonl are here")
    ap.add_argument("--deadline", type=float, default=300, help="seconds after which no further run starts")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, a few questions, CPU is fine")
    ap.add_argument("--naive-batches", type=int, default=2, help="naive batches timed (then scaled)")
    ap.add_argument("--workers", type=int, default=16, help="PoT executor processes")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--thoughts", default=",".join(THOUGHTS), help="pot,eot,cot (the modes above) or tir (issue 20's bar)")
    ap.add_argument("--kernel-tiles", default="", help="the kernel's launch shapes, DIM:ELEMENTS:WARPS,... "
                    "(decode_step.py --sweep prints the best)")
    ap.add_argument("--plan-prior", default="mean", help="realistic non-naive runs: the batch plan's prior of mean new "
                    "tokens, mean (the drawn lengths': DecodeOptions.expected_new_tokens) or none (all tokens), or both: mean,none")
    ap.add_argument("--profile", action="store_true", help="the non-naive runs under torch.profiler: GPU time by "
                    "kind of kernel, in prefills, busiest kernels")
    ap.add_argument("--attention", default="auto", help="decode attention of the non-naive runs, comma-separated: "
                    "auto (the Triton kernel on CUDA), kernel, torch (SDPA)")
    args = ap.parse_args()
    for spec in filter(None, args.kernel_tiles.split(",")):
        dim, elements, warps = map(int, spec.split(":"))
        decode_attention.TILES[dim] = (elements, warps)
    began = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.thoughts == "tir":
        run_tir(args, device, dtype)
        return
    limit, new = (4, 8) if args.smoke else (None, FULL_NEW)
    modes, length_modes = args.modes.split(","), args.lengths.split(",")
    if not set(modes) <= set(RUNNABLE) or not set(length_modes) <= set(LENGTHS) or not set(args.plan_prior.split(",")) <= {"mean", "none"}:
        ap.error(f"--modes: some of {', '.join(RUNNABLE)}; --lengths: some of {', '.join(LENGTHS)}; --plan-prior: mean, none")
    questions = load(args.data, limit=limit).records
    corpus = [q.question for q in load(args.data).records]
    tok = train_tokenizer(corpus + [student_input("", t) for t in THOUGHTS], min(k["vocab_size"] for _, k, _, _ in SHAPES.values()))
    # The order of evaluate_model's prompts too (question by question, THOUGHTS in order): a `Lengths` is indexed by it.
    prompts = [student_input(q.question, t) for q in questions for t in THOUGHTS]
    stops = None
    if "realistic" in length_modes:
        stops = draw_stops(rationale_lengths(tok, Path(args.lengths_data)), [t for _ in questions for t in THOUGHTS], new)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for mode in modes:
        for shape in args.shapes.split(","):
            kind, _, naive_batch, fast_batch = SHAPES[shape]
            model = None
            priors = args.plan_prior.split(",") if mode in ("graph", "eager") else ["none"]  # continuous batching
            for lengths, attention, prior in [(n, a, p) for n in length_modes
                                              for a in (args.attention.split(",") if mode != "naive" else ["-"])
                                              for p in (priors if n == "realistic" else ["none"])]:
                row = {"shape": shape, "mode": mode, "lengths": lengths, "prior": prior}
                rows.append(row)
                if time.perf_counter() - began > args.deadline:
                    row["error"] = f"skipped: past the {args.deadline:.0f} s deadline"
                    continue
                if model is None:
                    model, kind = build_model(shape, args.smoke, device, dtype)
                settings = StudentSettings(kind=kind, max_source_len=512)
                script = Lengths(stops, model.config.eos_token_id) if lengths == "realistic" else None
                tokens = int(stops.sum()) + len(prompts) if lengths == "realistic" else len(prompts) * new
                row["mean_new"] = tokens / len(prompts)
                try:
                    if mode == "naive":
                        row |= naive(model, tok, settings, prompts, naive_batch if not args.smoke else 4, new,
                                     args.naive_batches, lengths=script, tokens=tokens)
                    else:
                        row |= fast(model, tok, settings, args.data, limit, new, fast_batch if not args.smoke else 4,
                                    mode != "eager", args.workers, script=script, continuous=mode != "static", tokens=tokens,
                                    attention=attention, profile=args.profile,
                                    expected=row["mean_new"] if prior == "mean" else None)
                except Exception as exc:  # noqa: BLE001 - one failed run must not cost the others (one GPU run is all there is)
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                print(f"[{shape} {mode} {lengths} prior {prior}] {json.dumps(row)} ({time.perf_counter() - began:.0f} s in)", flush=True)
                if device == "cuda":
                    torch.cuda.empty_cache()
                write(out, rows)
            del model
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
    print(markdown(rows))


def write(out: Path, rows: list[dict]) -> None:
    (out / "eval_gpu.json").write_text(json.dumps({"device": _device(), "torch": torch.__version__, "rows": rows}, indent=2))
    (out / "eval_gpu_table.md").write_text(markdown(rows))


def _device() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


RUNS = {"naive": "naive HF generate, dynamic cache ({timed_batches}/{batches} batches timed, scaled)",
        "graph": "distill eval end to end (static loop, continuous batching, CUDA graphs: {graphs}, {kernel})",
        "eager": "distill eval end to end (static loop, continuous batching, eager, {kernel})",
        "static": "distill eval end to end (static loop batch by batch, CUDA graphs: {graphs}, {kernel})"}


def markdown(rows: list[dict]) -> str:
    import transformers

    lines = [f"{_device()}, torch {torch.__version__}, transformers {transformers.__version__}; lengths: forced = every "
             "sequence makes all its new tokens, realistic = each ends at a drawn teacher rationale length "
             "(speed-up: over naive with the same lengths)", "",
             "| shape | lengths | run | batch | seconds (decoding) | new tokens per sequence | tokens/s | peak GiB | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["shape"], r.get("lengths", "forced"))
    base = {key(r): r["seconds"] for r in rows if r["mode"] == "naive" and "seconds" in r}
    for r in rows:
        lengths = r.get("lengths", "forced")
        if "seconds" not in r:
            prior = f" (plan prior: {r['prior']})" if r.get("prior") == "mean" else ""
            lines.append(f"| {r['shape']} | {lengths} | {r['mode']}{prior}: {r.get('error', 'not run')} | | | | | | |")
            continue
        speedup = f"{base[key(r)] / r['seconds']:.1f}x" if key(r) in base else "-"
        decoding = f" ({r['decode_seconds']:.1f})" if "decode_seconds" in r else ""
        new = f"{r['mean_new']:.1f} (mean)" if lengths == "realistic" else f"{r['mean_new']:.0f}"
        kernel = "fused decode attention" if r.get("fused") else "SDPA attention"
        if r.get("expected"):
            kernel += f", plan for {r['expected']:.0f} new tokens"
        lines.append(f"| {r['shape']} | {lengths} | {RUNS[r['mode']].format(**r, kernel=kernel)} | {r['batch']} | {r['seconds']:.1f}{decoding} "
                     f"| {new} | {r['tokens_per_s']:,.0f} | {r['peak_gib']:.1f} | {speedup} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

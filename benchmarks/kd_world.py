"""The world, offline: a larger T5 teacher trained by SFT, then a smaller student by SFT, kd and gkd from it.

    python benchmarks/kd_world.py                   # 3 seeds, writes benchmarks/results/kd_world.md
    python benchmarks/kd_world.py --seeds 1 --student-steps 150 --no-write   # a reduced run

1. Data: the world teacher (`world:`) writes PoT programs for `world:train` questions of four
   families; `distill mix` keeps the correct ones (the quickstart's data, PoT only).
2. Teacher: `tiny-t5` of a few M parameters with the `train-bpe-numbers` tokenizer, trained by SFT on
   the same kind of data for other questions (`--teacher-seed`).
3. kd's data: the same rows, each target token with the teacher's top-k log-probs (a teacher-forced
   pass of the trained teacher over the data's targets, the columns `distill mix` writes).
4. Students (a smaller `tiny-t5`, the teacher's tokenizer), the same steps, batches and lr, per seed:
   sft on the data's targets; kd on the teacher's top-k (`--kd-alpha`); gkd sampling its own targets
   for a share of the micro-batches, scored by the teacher (`--beta`, `--on-policy-fraction`).
5. PoT accuracy of each on `world:test` (greedy); mean and spread (min-max) over the seeds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from distill.evaluation import evaluate_model  # noqa: E402
from distill.evaluation.backends import DecodeOptions  # noqa: E402
from distill.logprobs import TopK  # noqa: E402
from distill.students import StudentSettings  # noqa: E402
from distill.train import load_config, train  # noqa: E402
from distill.train.data import Collator, load_splits, tokenize  # noqa: E402
from distill.train.loop import model_targets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kd_world.md"
FAMILIES = "rates+distance+sharing+times_as_many"
OBJECTIVES = ("sft", "kd", "gkd")


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "distill", *args], check=True)


def data(out: Path, questions: int, seed: int = 0) -> Path:
    """The MTD set of correct world PoT programs for `questions` world:train questions drawn with `seed`."""
    mtd = out / "mtd"
    if not mtd.exists():
        run("generate", "--data", f"world:train?n={questions}&seed={seed}&families={FAMILIES}", "--teacher", "world:",
            "--thoughts", "pot", "--no-progress", "-o", str(out / "rationales.jsonl"))
        run("mix", str(out / "rationales.jsonl"), "--decontaminate", "none", "-o", str(mtd))
    return mtd


def config(out: Path, train_data: Path, shape: dict[str, int], steps: int, args: argparse.Namespace, **over: Any) -> Any:
    values = {"student": "tiny-t5", "data": str(train_data), "output_dir": str(out), "max_steps": steps,
              "batch_size": args.batch, "lr": args.lr, "save_every": 0, "trackers": "none", "threads": args.threads,
              "max_target_len": 128, "tiny": shape, **over}
    return load_config(None, values)


def teacher_topk(teacher_dir: Path, mtd: Path, out: Path, k: int) -> Path:
    """train.jsonl (with the teacher's top-k per target token) and val.jsonl beside it, from the MTD set."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    splits = load_splits(mtd)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(teacher_dir).eval()
    settings = StudentSettings(kind="seq2seq", cues=splits.cues or {}, max_source_len=256, max_target_len=128)
    examples = tokenize(splits.train, tok, settings)
    collate = Collator("seq2seq", tok.pad_token_id, decoder_start_id=model.config.decoder_start_token_id)
    lines = []
    with torch.inference_mode():
        for start in range(0, len(examples), 64):
            part = examples[start:start + 64]
            logits, _ = model_targets(model, collate(part))
            top = logits.float().log_softmax(-1).topk(k, dim=-1)
            at = 0
            for row, e in zip(splits.train[start:start + 64], part):
                n = len(e["tgt"])
                kd = TopK(e["tgt"], top.indices[at:at + n].numpy(), top.values[at:at + n].numpy())
                lines.append(json.dumps({"input": row["input"], "target": row["target"], **kd.columns()}))
                at += n
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    (out / "val.jsonl").write_text("".join(json.dumps({"input": r["input"], "target": r["target"]}) + "\n"
                                           for r in splits.validation))
    return out


def pot_accuracy(model_dir: Path, out: Path, test: int) -> float:
    if (out / "report.json").exists():  # a rerun (more seeds) reads the evaluations already done
        report = json.loads((out / "report.json").read_text())
    else:
        report = evaluate_model(str(model_dir), f"world:test?n={test}&families={FAMILIES}", out, thoughts="pot",
                                options=DecodeOptions(max_new_tokens=160), overwrite=True, show_progress=False)
    return 100 * report["datasets"]["world:test"]["accuracy"]["pot"]


def eval_loss(run: Path) -> float:
    """The run's last validation cross-entropy (every objective reports the same one)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["eval_loss"] for r in rows if "eval_loss" in r][-1]


def params(model_dir: Path) -> int:
    from transformers import AutoModelForSeq2SeqLM

    return sum(p.numel() for p in AutoModelForSeq2SeqLM.from_pretrained(model_dir).parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/kd_world"),
                        help="work dir (data, models, evals); a rerun with the same settings reuses what is there")
    parser.add_argument("--questions", type=int, default=4000, help="world:train questions")
    parser.add_argument("--test", type=int, default=300, help="world:test questions")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="students of seeds first-seed .. seeds-1 only (another process can train the others)")
    parser.add_argument("--teacher-d-model", type=int, default=192, help="192: 4.1M parameters, 128: 2.0M")
    parser.add_argument("--teacher-steps", type=int, default=800)
    parser.add_argument("--teacher-batch", type=int, default=64)
    parser.add_argument("--teacher-seed", type=int, default=1,
                        help="world:train seed of the teacher's questions (0: the students' own questions)")
    parser.add_argument("--student-d-model", type=int, default=96)
    parser.add_argument("--student-steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--topk", type=int, default=8)
    parser.add_argument("--kd-alpha", type=float, default=0.1)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--on-policy-fraction", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per training run")
    parser.add_argument("--no-write", action="store_true", help="print only, leave benchmarks/results alone")
    args = parser.parse_args()
    teacher_shape = {"d_model": args.teacher_d_model, "layers": 3, "heads": 4, "d_ff": 4 * args.teacher_d_model,
                     "vocab_size": 2048}
    student_shape = {"d_model": args.student_d_model, "layers": 2, "heads": 4, "d_ff": 2 * args.student_d_model}
    mtd = data(args.out, args.questions)
    # The teacher learns from other questions (another seed of the world): on the students' data its
    # distribution is then a prediction, not a memorised near-one-hot copy of the targets.
    teacher_mtd = mtd if args.teacher_seed == 0 else data(args.out / "teacher_data", args.questions, args.teacher_seed)
    teacher = args.out / "teacher"
    if not (teacher / "model.safetensors").exists():
        train(config(teacher, teacher_mtd, teacher_shape, args.teacher_steps, args, tokenizer="train-bpe-numbers", seed=0,
                     batch_size=args.teacher_batch),
              overwrite=True)
    teacher_acc = pot_accuracy(teacher, args.out / "eval" / "teacher", args.test)
    rows = args.out / "kd_data"
    if not (rows / "val.jsonl").exists():
        teacher_topk(teacher, mtd, rows, args.topk)
    acc: dict[str, list[float]] = {o: [] for o in OBJECTIVES}
    minutes: dict[str, float] = {o: 0.0 for o in OBJECTIVES}
    losses: dict[str, list[float]] = {o: [] for o in OBJECTIVES}
    seeds = range(args.first_seed, args.seeds)
    for seed in seeds:
        for objective in OBJECTIVES:
            extra = {"kd": {"kd_alpha": args.kd_alpha},
                     "gkd": {"teacher": f"hf:{teacher}", "beta": args.beta, "on_policy_fraction": args.on_policy_fraction,
                             "gkd_max_new_tokens": 128}}.get(objective, {})
            out = args.out / f"{objective}-{seed}"
            if not (out / "minutes.txt").exists():  # a rerun (more seeds) keeps the students already trained
                began = time.perf_counter()
                train(config(out, rows, student_shape, args.student_steps, args, tokenizer=str(teacher), seed=seed,
                             objective=objective, **extra), overwrite=True)
                (out / "minutes.txt").write_text(f"{(time.perf_counter() - began) / 60:.2f}\n")
            minutes[objective] += float((out / "minutes.txt").read_text())
            losses[objective].append(eval_loss(out))
            acc[objective].append(pot_accuracy(out, args.out / "eval" / f"{objective}-{seed}", args.test))
            print(f"seed {seed} {objective}: PoT {acc[objective][-1]:.1f}%", flush=True)
    table = ["| student | PoT accuracy, mean | min-max | per seed | vs sft | validation CE | train min/run |",
             "|---|---|---|---|---|---|---|"]
    sft = statistics.mean(acc["sft"])
    for objective in OBJECTIVES:
        values = acc[objective]
        mean = statistics.mean(values)
        table.append(f"| {objective} | {mean:.1f} | {min(values):.1f}-{max(values):.1f} | "
                     f"{', '.join(f'{v:.1f}' for v in values)} | {mean - sft:+.1f} | "
                     f"{statistics.mean(losses[objective]):.4f} | {minutes[objective] / len(seeds):.1f} |")
    command = "python benchmarks/kd_world.py " + " ".join(sys.argv[1:])
    text = (f"# kd and gkd on the world (CPU)\n\n`{command.strip()}`: teacher tiny-t5 {teacher_shape} "
            f"({params(teacher) / 1e6:.2f}M parameters, {args.teacher_steps} SFT steps x batch {args.teacher_batch} on "
            f"world:train seed {args.teacher_seed}, PoT {teacher_acc:.1f}% on "
            f"world:test n={args.test}); students tiny-t5 {student_shape} ({params(args.out / f'sft-{seeds[0]}') / 1e6:.2f}M), "
            f"{args.student_steps} steps x batch {args.batch}, lr {args.lr}, {len(seeds)} seed(s); kd top-{args.topk}, "
            f"alpha {args.kd_alpha}; gkd beta {args.beta}, on-policy fraction {args.on_policy_fraction}. "
            f"Validation CE: the students' cross-entropy on the mix's validation targets, mean over the seeds.\n\n"
            + "\n".join(table) + "\n")
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()

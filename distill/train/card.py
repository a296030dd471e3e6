"""The model card (`README.md`) of a trained student: its base model, its data (the data set
card's hash and counts), its training settings and, once `distill eval` has run, its accuracy."""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import yaml

from distill import __version__
from distill.markdown import md_table
from distill.train.checkpoint import CONFIG_FILE

EVAL_FILE = "eval_results.json"  # `distill eval` leaves its report here when the model is a student dir
SETTINGS = ("epochs", "max_steps", "lr", "scheduler", "warmup_ratio", "weight_decay", "batch_size", "max_tokens",
            "grad_accum", "mixed_precision", "seed")


def _last(rows: list[dict[str, Any]], key: str) -> Any:
    return next((r[key] for r in reversed(rows) if key in r), None)


def _data_section(data: Path) -> tuple[str, str]:
    """(the data set card's reference, a table of its counts), from `distill mix`'s outputs."""
    card, mix = data / "README.md", data / "mix.json"
    ref = f"card sha256 {hashlib.sha256(card.read_bytes()).hexdigest()[:12]}" if card.is_file() else "no data set card"
    if not mix.is_file():
        return ref, "Not a `distill mix` output: no counts."
    splits = json.loads(mix.read_text(encoding="utf-8")).get("counts", {}).get("splits", {})
    thoughts = sorted({t for per in splits.values() for t in per})
    rows = [[split, *(str(per.get(t, 0)) for t in thoughts), str(sum(per.values()))] for split, per in splits.items()]
    return ref, md_table(["split", *thoughts, "total"], rows) if rows else "No counts recorded."


def _evaluation(out: Path) -> str:
    path = out / EVAL_FILE
    if not path.is_file():
        return f"Not evaluated yet: `distill eval --model {out}` adds the table here."
    report = json.loads(path.read_text(encoding="utf-8"))
    methods = report["methods"]
    rows = [[name, *(f"{100 * acc:.1f}" if (acc := summary["accuracy"].get(m)) is not None else "-" for m in methods)]
            for name, summary in report["datasets"].items()]
    return (f"Accuracy (%) from `distill eval` (data: {', '.join(report['config'].get('data', []))}):\n\n"
            + md_table(["data set", *methods], rows))


def write_model_card(out: str | Path) -> Path:
    """Write (or rewrite) `out/README.md` from what the run left in `out`."""
    out = Path(out)
    config = yaml.safe_load((out / CONFIG_FILE).read_text(encoding="utf-8"))
    metrics_path = out / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()] if metrics_path.is_file() else []
    ref, counts = _data_section(Path(config["data"]))
    settings = json.loads((out / "distill_student.json").read_text()) if (out / "distill_student.json").is_file() else {}
    loss, eval_loss = _last(rows, "loss"), _last(rows, "eval_loss")
    text = Template(resources.files("distill").joinpath("templates/model_card.md").read_text(encoding="utf-8"))
    card = text.substitute(
        name=out.name, version=__version__, base_model=config["student"], kind=settings.get("kind", "?"),
        lora=f", LoRA r={config['lora']['r']}" if config.get("lora", {}).get("enabled") else ", full fine-tune",
        data=config["data"], data_card=ref, steps=_last(rows, "step") or 0, tokens=f"{_last(rows, 'tokens') or 0:,}",
        loss=f"{loss:.4f}" if loss is not None else "-",
        eval_loss=f", validation loss {eval_loss:.4f}" if eval_loss is not None else "",
        data_counts=counts, settings=md_table(["setting", "value"], [[k, str(config.get(k))] for k in SETTINGS]),
        evaluation=_evaluation(out),
    )
    (out / "README.md").write_text(card, encoding="utf-8")
    return out / "README.md"

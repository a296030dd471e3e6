"""Training configuration: a dataclass, loaded from a student preset (YAML) plus CLI overrides.

Resolution order: defaults < preset (`recipes/students/<name>.yaml` or a path) < overrides.
Every unknown key or badly typed value is an `InputError` naming the key and the file it came from.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill.records import InputError, config_loader, read_yaml_mapping
from distill.resources import resource

RECIPES_DIR = resource("recipes", "students")
TINY_STUDENTS = ("tiny-t5", "tiny-llama")
TRAINED_TOKENIZER = "train-bpe"  # `tokenizer:` value: a BPE trained on the training set (tiny students)

# Keys that take one of a fixed set of values.
CHOICES = {
    "kind": ("auto", "seq2seq", "causal"),
    "prompt_format": ("plain", "chat"),
    "scheduler": ("cosine", "linear", "constant"),
    "mixed_precision": ("auto", "no", "bf16", "fp16"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "lora.quantize": ("none", "4bit", "8bit"),
    "objective": ("sft", "kd", "gkd"),
}


@dataclass
class LoraSettings:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    quantize: str = "none"  # 4bit/8bit: QLoRA through bitsandbytes


@dataclass
class TinySettings:
    """Shape of the `tiny-t5` / `tiny-llama` students built from a config (random weights)."""

    d_model: int = 128
    layers: int = 3
    heads: int = 4
    d_ff: int = 0  # feed-forward width (0: 4 * d_model)
    dropout: float = 0.0
    vocab_size: int = 1024  # of the `tokenizer: train-bpe` BPE


@dataclass
class TrainConfig:
    student: str = ""  # hub id, local model dir, or tiny-t5 / tiny-llama
    data: str = ""  # MTD dir from `distill mix`, or JSONL file/dir of {input, target}
    output_dir: str = ""
    tokenizer: str | None = None  # default: the student's own (ByT5 for the tiny students); or train-bpe
    kind: str = "auto"  # seq2seq | causal | auto (from the model config)
    prompt_format: str = "plain"  # causal students: the cue text as it is, or the chat template
    max_source_len: int = 256
    max_target_len: int = 256
    # What the student learns from (docs/train.md#distillation-objectives): sft, the data's tokens; kd, the
    # teacher's top-k log-probabilities stored in the data (`distill generate --logprobs K`); gkd, the
    # teacher's full distribution over sequences the student samples itself (on-policy).
    objective: str = "sft"
    kd_alpha: float = 0.0  # kd: loss = (1 - kd_alpha) * KL(teacher top-k || student) + kd_alpha * SFT
    teacher: str | None = None  # hf:PATH (gkd: the scoring teacher; kd: its tokenizer is checked against the student's)
    beta: float = 0.0  # gkd: 0 forward KL(teacher || student), 1 reverse KL, in between the generalised JSD
    on_policy_fraction: float = 1.0  # gkd: share of micro-batches whose targets the student samples itself
    gkd_max_new_tokens: int = 0  # gkd: tokens sampled per target at most (0: max_target_len)
    gkd_temperature: float = 1.0  # gkd: the student's sampling temperature
    # Optimisation (Xwin-Math SFT defaults: 3 epochs, lr 2e-5, cosine, 4% warm-up).
    epochs: int = 3
    max_steps: int = 0  # > 0: stop after this many optimizer steps (overrides epochs)
    lr: float = 2e-5
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_ratio: float = 0.04
    max_grad_norm: float = 1.0
    batch_size: int = 16  # examples per micro-batch and process
    max_tokens: int = 0  # > 0: also cap each micro-batch at this many (padded) tokens
    grad_accum: int = 1
    group_by_length: bool = True
    # Padding-free micro-batches: examples back to back in one row, none attending to another. auto: causal
    # students when the attention is flash_attention_2 or varlen (varlen kernels; under SDPA a packed row
    # pays dense attention over its whole length, and length-grouped padding is cheaper); T5 students on
    # t5-fused (not for gkd); none under compile: static. Packed rows ignore length_buckets.
    packing: bool | str = "auto"
    # Precision and speed.
    mixed_precision: str = "auto"  # auto: bf16 where the GPU supports it, else none
    # Weights; auto: float32 for full fine-tuning, bfloat16 LoRA base on GPU. bfloat16 with full fine-tuning:
    # the optimizer keeps fp32 master copies (distill/train/optim.py)
    dtype: str = "auto"
    # auto: flash_attention_2 (causal) when flash-attn is installed and a GPU is there; else varlen (causal,
    # torch's varlen FlashAttention on an Ampere+ GPU in bf16, packing not false nor auto under compile: static;
    # distill/train/varlen.py);
    # t5-fused for T5 students on a GPU (Triton kernels with the relative-position bias inside; t5_fused.py);
    # else sdpa. t5-flex: T5 on a GPU by FlexAttention (no dropout on attention probabilities; t5_flex.py)
    attn_implementation: str = "auto"
    gradient_checkpointing: bool = False
    # torch.compile each repeated block (encoder/decoder layers): true, with dynamic shapes; static, a graph per
    # batch shape (needs length_buckets; more compiles, faster kernels: docs/train.md)
    compile: bool | str = False
    # Pad every micro-batch to a fixed shape: each sequence (seq2seq: source and target apart) to the smallest
    # of these widths that holds it, and the rows to max_tokens // width (or batch_size). Bounds the shapes
    # that `compile` sees; [] pads to the longest instead. Not with gkd under max_tokens (its samples change the shapes).
    length_buckets: list[int] = field(default_factory=list)
    pad_to_multiple_of: int = 0  # 0: 8 on GPU (tensor cores), 1 on CPU
    threads: int = 0  # CPU threads for torch (0: every core)
    lora: LoraSettings = field(default_factory=LoraSettings)
    tiny: TinySettings = field(default_factory=TinySettings)
    # Checkpoints, evaluation, logging.
    save_every: int = 500  # optimizer steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2  # newest kept (0: all)
    eval_every: int = 0  # 0: evaluate at each checkpoint and at the end
    log_every: int = 10
    trackers: list[str] | str = "auto"  # auto: TensorBoard when installed; or a list (tensorboard, wandb)
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def dump(self, path: str | os.PathLike) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def _apply(obj: Any, data: dict[str, Any], source: str, prefix: str = "") -> None:
    """Set the fields of the dataclass `obj` from `data`, checking names and types."""
    if not isinstance(data, dict):
        raise InputError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}", source)
    hints = typing.get_type_hints(type(obj))
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            raise InputError(f"unknown key {name!r} (known: {known})", source)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, source, f"{name}.")
            continue
        if isinstance(value, int) and not isinstance(value, bool) and hints[key] is float:
            value = float(value)
        if not _matches(value, hints[key]):
            raise InputError(f"key {name!r}: expected {_type_name(hints[key])}, got {value!r}", source)
        if name in CHOICES and value not in CHOICES[name]:
            raise InputError(f"key {name!r}: {value!r} is not one of {', '.join(CHOICES[name])}", source)
        setattr(obj, key, value)


def _check(config: TrainConfig, source: str) -> None:
    positive = {"batch_size": config.batch_size, "grad_accum": config.grad_accum, "epochs": config.epochs,
                "max_source_len": config.max_source_len, "max_target_len": config.max_target_len,
                "log_every": config.log_every, "lora.r": config.lora.r, "tiny.d_model": config.tiny.d_model,
                "tiny.layers": config.tiny.layers, "tiny.heads": config.tiny.heads,
                "tiny.vocab_size": config.tiny.vocab_size}
    non_negative = {"max_steps": config.max_steps, "tiny.d_ff": config.tiny.d_ff, "max_tokens": config.max_tokens, "save_every": config.save_every,
                    "keep_checkpoints": config.keep_checkpoints, "eval_every": config.eval_every,
                    "threads": config.threads, "pad_to_multiple_of": config.pad_to_multiple_of,
                    "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm}
    for key, value in positive.items():
        if value <= 0:
            raise InputError(f"key {key!r}: must be > 0, got {value}", source)
    for key, value in non_negative.items():
        if value < 0:
            raise InputError(f"key {key!r}: must be >= 0, got {value}", source)
    if not 0 < config.lr < 1:
        raise InputError(f"key 'lr': must be in (0, 1), got {config.lr}", source)
    if not 0 <= config.warmup_ratio < 1:
        raise InputError(f"key 'warmup_ratio': must be in [0, 1), got {config.warmup_ratio}", source)
    if not 0 <= config.tiny.dropout < 1:
        raise InputError(f"key 'tiny.dropout': must be in [0, 1), got {config.tiny.dropout}", source)
    if not 0 <= config.lora.dropout < 1:
        raise InputError(f"key 'lora.dropout': must be in [0, 1), got {config.lora.dropout}", source)
    for key in ("kd_alpha", "beta", "on_policy_fraction"):
        if not 0 <= getattr(config, key) <= 1:
            raise InputError(f"key {key!r}: must be in [0, 1], got {getattr(config, key)}", source)
    if config.gkd_max_new_tokens < 0 or config.gkd_temperature <= 0:
        raise InputError("keys 'gkd_max_new_tokens' >= 0 and 'gkd_temperature' > 0", source)
    if config.tiny.d_model % config.tiny.heads:
        raise InputError("key 'tiny.d_model': must be a multiple of tiny.heads", source)
    if any(b <= 0 for b in config.length_buckets) or config.length_buckets != sorted(set(config.length_buckets)):
        raise InputError(f"key 'length_buckets': increasing positive widths, got {config.length_buckets}", source)
    if config.compile not in (True, False, "static"):
        raise InputError(f"key 'compile': true, false or static, got {config.compile!r}", source)
    if config.packing not in (True, False, "auto"):
        raise InputError(f"key 'packing': true, false or auto, got {config.packing!r}", source)
    if isinstance(config.trackers, str) and config.trackers not in ("auto", "none"):
        raise InputError(f"key 'trackers': 'auto', 'none' or a list, got {config.trackers!r}", source)


def recipe_path(name: str) -> Path | None:
    """A preset by name (`codet5p-770m`) or path; None when there is no such preset."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = RECIPES_DIR / f"{name}.yaml"
    return candidate if candidate.is_file() else None


def preset_names() -> list[str]:
    """The student presets shipped in recipes/students, by name."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def preset_for_student(student: str) -> Path | None:
    """The preset named `student`, or else the one whose `student:` is this model id."""
    if (path := recipe_path(student)) is not None:
        return path
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and data.get("student") == student:
            return path
    return None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    return read_yaml_mapping(path, "config", config=True)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys (`lora.r`) as nested sections."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def parse_set(items: typing.Iterable[str]) -> dict[str, Any]:
    """`key=value` strings (dotted keys for nested sections, YAML values) as a nested dict."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        try:
            flat[key.strip()] = yaml.load(raw, Loader=config_loader())
        except yaml.YAMLError:
            flat[key.strip()] = raw
    return nest(flat)


def load_config(recipe: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
                *, base: TrainConfig | None = None) -> TrainConfig:
    """Defaults (or `base`), then the preset file, then `overrides` (CLI); validated."""
    config = base or TrainConfig()
    if recipe is not None:
        path = recipe_path(str(recipe))
        if path is None:
            known = ", ".join(preset_names())
            raise InputError(f"no student preset {str(recipe)!r} (presets: {known})")
        _apply(config, read_yaml(path), str(path))
        _check(config, str(path))
    _apply(config, overrides or {}, "command line")
    _check(config, "command line")
    if config.compile == "static" and not config.length_buckets:  # on the merged config: either may set them
        source = "command line" if recipe is None or "compile" in (overrides or {}) else str(path)
        raise InputError("key 'compile': static needs length_buckets (else every batch shape compiles)", source)
    for key, flag in (("student", "--student"), ("data", "--data"), ("output_dir", "-o/--output")):
        if not getattr(config, key):
            raise InputError(f"missing {flag} (or key {key!r} in the preset)")
    if config.objective == "gkd" and config.length_buckets and config.max_tokens:
        # the student's samples replace the targets after the batches are planned: a batch's bucket widens,
        # and its row count (max_tokens over the widths) would fall below the examples planned into it
        raise InputError("key 'length_buckets': not with --objective gkd and max_tokens (sampled targets change "
                         "the batch shapes planned from the data's); drop length_buckets or max_tokens")
    if config.objective == "gkd" and not config.teacher:
        raise InputError("--objective gkd needs --teacher hf:PATH (the model that scores the student's samples)")
    return config

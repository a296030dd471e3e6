"""Training data: read an MTD set, tokenise it, plan length-grouped batches, collate them.

Causal examples carry *shifted* labels: `labels[t]` is the token that follows position t when it
belongs to the target, else -100. The loss is then a plain cross-entropy per position, prompt
tokens cost nothing, and packing several examples in one row needs no special label handling.
Seq2seq examples carry `labels` beside `tgt` only where some target tokens are not learnt (the
interpreter's outputs in a TIR trace, `distill.train.targets`); the decoder still reads them.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.logprobs import KD_COLUMNS, TopK
from distill.records import InputError, iter_jsonl
from distill.students import StudentSettings, format_prompt
from distill.train.targets import Mask, encode_targets

IGNORE = -100
Row = dict[str, Any]  # input, target (str); kd (TopK) when the teacher's top-k log-probs came with the data


@dataclass
class Splits:
    train: list[Row]
    validation: list[Row]
    cues: dict[str, str] | None  # the templates `distill mix` used (mix.json), when known


def _jsonl_rows(path: Path) -> list[Row]:
    rows = []
    for lineno, obj in iter_jsonl(path):
        for name in ("input", "target"):
            if not isinstance(obj.get(name), str):
                raise InputError(f"field {name!r} missing or not a string", path, lineno)
        row = {"input": obj["input"], "target": obj["target"]}
        if all(isinstance(obj.get(c), list) for c in KD_COLUMNS):
            row["kd"] = TopK.from_columns(*(obj[c] for c in KD_COLUMNS))
        rows.append(row)
    return rows


def _dataset_rows(dataset: Any, where: str) -> list[Row]:
    for name in ("input", "target"):
        if name not in dataset.column_names:
            raise InputError(f"column {name!r} missing (have: {', '.join(dataset.column_names)})", where)
    rows: list[Row] = [{"input": i, "target": t} for i, t in zip(dataset["input"], dataset["target"])]
    if all(c in dataset.column_names for c in KD_COLUMNS):
        for row, *columns in zip(rows, *(dataset[c] for c in KD_COLUMNS)):
            if columns[0]:  # rows without the teacher's log-probs (another teacher, an old run) stay SFT
                row["kd"] = TopK.from_columns(*columns)
    return rows


def load_splits(path: str | Path) -> Splits:
    """Train and validation rows from an MTD dir (`save_to_disk`), a JSONL file, or a dir of JSONL files.

    In a JSONL dir, files whose name starts with `val` or `dev` are the validation split.
    """
    splits = _read_splits(Path(path))
    if not splits.train:
        raise InputError("the training set is empty (nothing to learn from; did `distill mix` keep anything?)", path)
    return splits


def _read_splits(path: Path) -> Splits:
    if not path.exists():
        raise InputError("no such file or directory", path)
    cues = None
    if (path / "mix.json").is_file():
        try:
            cues = json.loads((path / "mix.json").read_text(encoding="utf-8")).get("cues")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"cannot read mix.json: {exc}", path / "mix.json") from None
    if path.is_file():
        return Splits(_jsonl_rows(path), [], cues)
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        from datasets import DatasetDict, load_from_disk

        try:
            data = load_from_disk(str(path))
        except IndexError:  # `datasets` cannot load a saved split with no rows
            raise InputError("the training set is empty or unreadable (a saved split with no rows)", path) from None
        if not isinstance(data, DatasetDict):
            return Splits(_dataset_rows(data, str(path)), [], cues)
        if "train" not in data:
            raise InputError(f"no 'train' split (have: {', '.join(data)})", path)
        val = data.get("validation")
        return Splits(_dataset_rows(data["train"], f"{path}/train"),
                      _dataset_rows(val, f"{path}/validation") if val is not None and len(val) else [], cues)
    files = sorted(path.glob("*.jsonl"))
    if not files:
        raise InputError("neither a saved DatasetDict nor a directory of .jsonl files", path)
    train, val = [], []
    for file in files:
        (val if file.name.lower().startswith(("val", "dev")) else train).extend(_jsonl_rows(file))
    return Splits(train, val, cues)


def tokenize(rows: list[Row], tokenizer: Any, settings: StudentSettings, chunk: int = 1024) -> list[dict[str, list[int]]]:
    """Token ids per example: seq2seq `{src, tgt}` (and `labels` where some target tokens are not
    learnt); causal `{ids, labels}` (labels shifted, prompt and interpreter outputs masked)."""
    eos = tokenizer.eos_token_id
    # an empty causal prompt has no position to predict the first target token from: it starts with BOS
    # (EOS where there is none, as GPT-2 does)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    out = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        targets, masks = encode_targets(tokenizer, [r["target"] for r in part])
        cut = settings.max_target_len - 1
        if settings.kind == "seq2seq":
            sources = tokenizer([r["input"] for r in part], truncation=True, max_length=settings.max_source_len)["input_ids"]
            for row, src, tgt, mask in zip(part, sources, targets, masks):
                tgt, mask = tgt[:cut] + [eos], _cut(mask, cut)
                labels = {} if mask is None else {"labels": _learnt(tgt, mask)}
                out.append({"src": src, "tgt": tgt, **labels, **_teacher_topk(row, tgt, mask)})
            continue
        prompts = [format_prompt(tokenizer, r["input"], settings) for r in part]
        # A chat template writes its own special tokens; plain prompts get the tokenizer's (e.g. BOS).
        special = settings.prompt_format != "chat"
        encoded = tokenizer(prompts, add_special_tokens=special)["input_ids"]
        for row, prompt, tgt, mask in zip(part, encoded, targets, masks):
            prompt = _strip_eos(prompt, eos)[:settings.max_source_len] or [bos]
            tgt, mask = tgt[:cut] + [eos], _cut(mask, cut)
            ids = prompt + tgt
            labels = [IGNORE] * (len(prompt) - 1) + _learnt(tgt, mask) + [IGNORE]
            out.append({"ids": ids, "labels": labels, **_teacher_topk(row, tgt, mask)})
    return out


def _cut(mask: Mask, n: int) -> Mask:
    """A target's mask cut as its tokens are (to n, then EOS, which is always learnt)."""
    return None if mask is None else mask[:n] + [True]


def _learnt(tokens: list[int], mask: Mask) -> list[int]:
    return tokens if mask is None else [t if keep else IGNORE for t, keep in zip(tokens, mask)]


def _teacher_topk(row: Row, target: list[int], mask: Mask = None) -> dict[str, Any]:
    """The teacher's top-k at the target positions it generated: the longest common prefix of the
    target's tokens and the teacher's sampled tokens (the mix may have trimmed the teacher's text, and
    a re-tokenised text can split differently); the positions after it are trained on the data's token.
    Positions the student does not learn (`mask`) are left out, so the entries still line up with the
    example's first learnt positions."""
    kd: TopK | None = row.get("kd")
    if kd is None:
        return {}
    n = 0
    for a, b in zip(target, kd.ids.tolist()):
        if a != b:
            break
        n += 1
    at = list(range(n)) if mask is None else [i for i in range(n) if mask[i]]
    return {"kd_top": kd.top_ids[at].tolist(), "kd_lp": kd.top_logprobs[at].astype("float32").tolist()}


def target_count(example: dict[str, Any]) -> int:
    """The target tokens an example trains on."""
    if "labels" in example:
        return sum(t != IGNORE for t in example["labels"])
    return len(example["tgt"])


def aligned_share(examples: list[dict[str, Any]]) -> float:
    """Share of target tokens that carry the teacher's top-k (the rest are trained on the one-hot)."""
    return sum(len(e.get("kd_top", ())) for e in examples) / max(sum(map(target_count, examples)), 1)


def _strip_eos(ids: list[int], eos: int) -> list[int]:
    # Tokenizers that append EOS to every text (T5-style) would end the prompt before the target.
    return ids[:-1] if ids and ids[-1] == eos else ids


def length(example: dict[str, list[int]]) -> int:
    return len(example["ids"]) if "ids" in example else len(example["src"]) + len(example["tgt"])


def _cost(lengths: list[int], packed: bool) -> int:
    """Tokens a micro-batch occupies: the sum when packed, else padded to the longest."""
    return sum(lengths) if packed else len(lengths) * max(lengths)


def plan_batches(lengths: list[int], *, batch_size: int, max_tokens: int = 0, group_by_length: bool = True,
                 packed: bool = False, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """Micro-batches of example indices for one epoch: a pure function of (seed, epoch), so a resumed
    run rebuilds the same plan and skips to its position.

    Grouping by length sorts examples within shuffled mega-batches (50 batches each), so batches
    are nearly uniform in length (little padding) while the order stays random.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        order = [i for s in range(0, len(order), mega)
                 for i in sorted(order[s:s + mega], key=lambda i: lengths[i], reverse=True)]
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        fits = len(current) < batch_size and (
            not max_tokens or _cost([lengths[j] for j in current] + [lengths[i]], packed) <= max_tokens)
        if current and not fits:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if group_by_length:
        rng.shuffle(batches)
    return batches


def bucket(width: int, buckets: list[int]) -> int:
    """The smallest bucket that holds `width` (past the largest: a multiple of the largest)."""
    return next((b for b in buckets if b >= width), -(-width // buckets[-1]) * buckets[-1])


def bucket_shape(example: dict[str, list[int]], buckets: list[int]) -> tuple[int, ...]:
    """Padded widths of an example: (ids,) causal, (source, target) seq2seq."""
    sides = [example["ids"]] if "ids" in example else [example["src"], example["tgt"]]
    return tuple(bucket(len(s), buckets) for s in sides)


def bucket_rows(shape: tuple[int, ...], batch_size: int, max_tokens: int) -> int:
    """Rows of every micro-batch of this shape: the token budget over the padded row width."""
    return max(1, min(batch_size, max_tokens // sum(shape))) if max_tokens else batch_size


def plan_buckets(shapes: list[tuple[int, ...]], *, batch_size: int, max_tokens: int = 0, seed: int = 0,
                 epoch: int = 0) -> list[list[int]]:
    """Micro-batches of one epoch where every batch has one bucket shape: as `plan_batches`, a pure
    function of (seed, epoch); examples are shuffled within their bucket, batches across buckets.

    A bucket rarely holds a whole number of batches, and the collator fills a short batch with empty
    rows up to its shape's row count, so each bucket's remainder would cost a full step. The remainders
    are pooled instead, in shape order, into batches padded to the widest of their buckets, each closed
    when the next example would not fit: far fewer short batches (on train_gpu's data, 21.7k to 25.8k
    real tokens a step). A pooled seq2seq batch can take a (source, target) pair of buckets that no
    single example has; it is still one of the buckets' pairs, so the set of shapes stays bounded."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(shapes)))
    rng.shuffle(order)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in order:
        groups.setdefault(shapes[i], []).append(i)
    batches, leftovers = [], []
    for shape, members in sorted(groups.items()):
        rows = bucket_rows(shape, batch_size, max_tokens)
        full = len(members) // rows * rows
        batches += [members[s:s + rows] for s in range(0, full, rows)]
        leftovers += members[full:]
    current: list[int] = []
    widest: tuple[int, ...] = ()
    for i in sorted(leftovers, key=lambda i: shapes[i]):
        wider = tuple(map(max, zip(widest, shapes[i]))) if current else shapes[i]
        if current and len(current) >= bucket_rows(wider, batch_size, max_tokens):
            batches.append(current)
            current, wider = [], shapes[i]
        current.append(i)
        widest = wider
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def teacher_targets(batch: dict[str, torch.Tensor], examples: list[dict[str, Any]], k: int,
                    packed: bool) -> dict[str, torch.Tensor]:
    """`kd_ids`/`kd_lp` (rows, width, k) beside `labels`: the teacher's top-k where the example carries
    it, else the data's one-hot (the label at log-prob 0, the other k-1 slots at -inf)."""
    labels = batch["labels"]
    ids = torch.zeros((*labels.shape, k), dtype=torch.long)
    ids[..., 0] = labels.clamp(min=0)
    lp = torch.full((*labels.shape, k), float("-inf"))
    lp[..., 0] = 0.0
    rows = [list(range(len(examples)))] if packed else [[i] for i in range(len(examples))]
    for r, members in enumerate(rows):
        positions = (labels[r] != IGNORE).nonzero().squeeze(-1).tolist()
        for i in members:
            e = examples[i]
            mine, positions = positions[:target_count(e)], positions[target_count(e):]
            top = e.get("kd_top") or []
            if top:
                width = min(k, len(top[0]))
                at = torch.tensor(mine[:len(top)])
                ids[r, at, :] = 0
                lp[r, at, :] = float("-inf")
                ids[r, at, :width] = torch.tensor(top, dtype=torch.long)[:, :width]
                lp[r, at, :width] = torch.tensor(e["kd_lp"])[:, :width]
    return batch | {"kd_ids": ids, "kd_lp": lp}


def _pad(seqs: list[list[int]], value: int, multiple: int, width: int = 0) -> torch.Tensor:
    width = width or math.ceil(max(map(len, seqs)) / multiple) * multiple
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def _packed(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One row of the sequences back to back, their cumulative lengths (int32, from 0) and the longest."""
    lengths = [len(s) for s in seqs]
    return (torch.tensor([[t for s in seqs for t in s]]), torch.tensor([0, *lengths]).cumsum(0).to(torch.int32),
            max(lengths))


def _fill_rows(batch: dict[str, torch.Tensor], rows: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Extra all-padding rows up to `rows`: no target tokens, and attending to every position (a fully
    masked row would make NaNs in some attention kernels)."""
    values = {"attention_mask": 1, "labels": IGNORE}
    return {k: torch.cat([v, v.new_full((rows - len(v), v.shape[1]), values.get(k, pad_id))]) for k, v in batch.items()}


@dataclass
class Collator:
    """Turns a list of tokenised examples into model inputs (CPU tensors)."""

    kind: str
    pad_id: int
    decoder_start_id: int | None = None
    packing: bool = False
    pad_to_multiple_of: int = 1
    # Fixed shapes (see `plan_buckets`): widths padded to these buckets, rows to `bucket_rows`.
    buckets: list[int] = field(default_factory=list)
    batch_size: int = 0
    max_tokens: int = 0
    topk: int = 0  # > 0: also the teacher's top-k per target position (`kd_ids`, `kd_lp`), for objective kd

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not self.buckets or self.packing:
            batch = self._collate(examples, (0, 0))
        else:
            shape = tuple(map(max, zip(*(bucket_shape(e, self.buckets) for e in examples))))
            batch = self._collate(examples, shape if len(shape) == 2 else (shape[0], 0))
            batch = _fill_rows(batch, bucket_rows(shape, self.batch_size, self.max_tokens), self.pad_id)
        return teacher_targets(batch, examples, self.topk, self.packing) if self.topk else batch

    def _collate(self, examples: list[dict[str, list[int]]], widths: tuple[int, int]) -> dict[str, torch.Tensor]:
        m, (width, target_width) = self.pad_to_multiple_of, widths
        if self.kind == "seq2seq" and self.packing:
            # Each stack's examples back to back in one row, their bounds as keywords: t5-fused
            # (distill/train/t5_fused.py `pack`) keeps them apart and reads the bias within each.
            sources, source_bounds, longest_source = _packed([e["src"] for e in examples])
            decoder_ids, target_bounds, longest_target = _packed([[self.decoder_start_id] + e["tgt"][:-1] for e in examples])
            labels, _, _ = _packed([e.get("labels", e["tgt"]) for e in examples])
            return {"input_ids": sources, "decoder_input_ids": decoder_ids, "labels": labels,
                    "source_bounds": source_bounds, "target_bounds": target_bounds,
                    "longest_source": longest_source, "longest_target": longest_target}
        if self.kind == "seq2seq":
            src = [e["src"] for e in examples]
            tgt = [e["tgt"] for e in examples]
            return {
                "input_ids": _pad(src, self.pad_id, m, width),
                "attention_mask": _pad([[1] * len(s) for s in src], 0, m, width),
                "decoder_input_ids": _pad([[self.decoder_start_id] + t[:-1] for t in tgt], self.pad_id, m,
                                          target_width),
                "labels": _pad([e.get("labels", e["tgt"]) for e in examples], IGNORE, m, target_width),
            }
        if self.packing:
            # One row, position ids restarting per example: the attention backend keeps examples apart
            # (varlen kernels read the examples' bounds, HF's FlashAttention keywords; SDPA the position ids).
            ids, bounds, longest = _packed([e["ids"] for e in examples])
            return {
                "input_ids": ids,
                "position_ids": torch.tensor([[p for e in examples for p in range(len(e["ids"]))]]),
                "labels": _packed([e["labels"] for e in examples])[0],
                "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": longest, "max_length_k": longest,
            }
        ids = [e["ids"] for e in examples]
        return {
            "input_ids": _pad(ids, self.pad_id, m, width),
            "attention_mask": _pad([[1] * len(s) for s in ids], 0, m, width),
            "labels": _pad([e["labels"] for e in examples], IGNORE, m, width),
        }

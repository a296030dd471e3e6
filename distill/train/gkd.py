"""On-policy distillation (gkd): the student samples targets for the questions of the mix, the frozen
teacher scores every token of them, and the loss is the generalised JSD between the two distributions
at each target position (`distill.train.kd.generalized_jsd`).

`OnPolicy.rewrite` replaces a micro-batch's targets by the student's samples (for the share
`on_policy_fraction` of micro-batches, chosen by a pure function of the seed and the micro-batch
index, so that a resumed run makes the same choices; sampling draws from torch's RNG, which the
checkpoint restores). The other micro-batches keep the data's (teacher-written) targets, and are
scored by the teacher all the same. T5 and LLaMA students sample with
`distill.train.sampling.StudentSampler` (evaluation's static-cache decode loop, CUDA graphs on a
GPU), other students with HF `generate`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel

from distill.records import InputError
from distill.students import model_kind, pretrained
from distill.train import varlen
from distill.train.data import IGNORE
from distill.train.kd import generalized_jsd
from distill.train.loop import Batch, model_targets
from distill.train.sampling import StudentSampler


def teacher_path(spec: str) -> str:
    """The local path or hub id of an `hf:` teacher spec (a bare path is taken as it is)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hf":
        return rest
    if sep and kind in ("openai", "vllm", "world"):
        raise InputError(f"--teacher {spec!r}: gkd scores with a local model; use hf:PATH")
    return spec


def load_teacher(spec: str, kind: str, device: Any, on_gpu: bool, attention: str | None = None) -> Any:
    """The teacher, frozen, in eval mode (bf16 on a GPU); it must be of the student's kind. `attention`:
    the student's, when it is varlen (the teacher then scores the same packed rows without a dense mask)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = teacher_path(spec)
    teacher_kind = model_kind(pretrained(AutoConfig, path, "teacher"))
    if teacher_kind != kind:
        raise InputError(f"--teacher {spec!r} is a {teacher_kind} model but the student is {kind}: gkd scores the "
                         "student's sequences with a teacher of the same kind")
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(path, torch_dtype=torch.bfloat16 if on_gpu else torch.float32).to(device).eval()
    model.requires_grad_(False)
    if attention == varlen.NAME:
        from distill.train.model import set_attention

        set_attention(model, varlen.NAME)
    return model


@dataclass
class OnPolicy:
    teacher: Any
    kind: str
    beta: float
    fraction: float
    max_new_tokens: int
    temperature: float
    pad_id: int
    eos_id: int
    seed: int
    force_length: bool = False  # every sample max_new_tokens long (benchmarks: fixed shapes)
    student: Any = None  # set once the model is prepared (the sampler reads the unwrapped model)
    device: Any = "cpu"
    static_loop: bool = True  # False: HF `generate` for every student (benchmarks: the baseline)
    _sampler: StudentSampler | None = field(default=None, init=False, repr=False)

    def on_policy(self, index: int) -> bool:
        return self.fraction >= 1 or random.Random(self.seed * 1_000_003 + index).random() < self.fraction

    def rewrite(self, examples: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
        """The examples with targets sampled by the student (micro-batch `index` of the run)."""
        if not self.on_policy(index):
            return examples
        prompts = [e["src"] if self.kind == "seq2seq" else e["ids"][:prompt_len(e)] for e in examples]
        samples = self.sample(prompts)
        if self.kind == "seq2seq":
            return [{"src": p, "tgt": s} for p, s in zip(prompts, samples)]
        return [{"ids": p + s, "labels": [IGNORE] * (len(p) - 1) + s + [IGNORE]} for p, s in zip(prompts, samples)]

    @torch.no_grad()
    def sample(self, prompts: list[list[int]]) -> list[list[int]]:
        """One sampled continuation per prompt, up to and including EOS."""
        model = extract_model_from_parallel(self.student)
        if self._sampler is None and self.static_loop and StudentSampler.supports(model):
            self._sampler = StudentSampler(model, kind=self.kind, max_new_tokens=self.max_new_tokens,
                                           temperature=self.temperature, pad_id=self.pad_id, eos_id=self.eos_id,
                                           force_length=self.force_length)
        new = self._sampler(prompts) if self._sampler is not None else self._generate(model, prompts)
        samples = []
        for ids in new.tolist():
            ids = ids[: ids.index(self.eos_id) + 1] if self.eos_id in ids and not self.force_length else ids
            samples.append(ids or [self.eos_id])
        return samples

    def _generate(self, model: Any, prompts: list[list[int]]) -> torch.Tensor:
        """HF `generate` for the students StudentSampler does not drive (other families, LoRA-wrapped)."""
        width = max(map(len, prompts))
        left = self.kind == "causal"  # causal models continue the prompt: pad on the left
        rows = [([self.pad_id] * (width - len(p)) + p) if left else (p + [self.pad_id] * (width - len(p))) for p in prompts]
        mask = [([0] * (width - len(p)) + [1] * len(p)) if left else ([1] * len(p) + [0] * (width - len(p))) for p in prompts]
        was_training = model.training
        model.eval()
        try:
            with varlen.padded(model):  # generate runs padded batches
                out = model.generate(input_ids=torch.tensor(rows, device=self.device),
                                     attention_mask=torch.tensor(mask, device=self.device), do_sample=True, top_k=0,
                                     top_p=1.0, temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                     pad_token_id=self.pad_id, eos_token_id=self.eos_id,
                                     min_new_tokens=self.max_new_tokens if self.force_length else None)
        finally:
            model.train(was_training)
        return out[:, width:] if left else out[:, 1:]  # seq2seq: drop the decoder start token

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        """Summed generalised JSD between student and teacher at the target positions."""
        logits, keep = model_targets(model, batch)
        with torch.no_grad():
            teacher_logits, _ = model_targets(self.teacher, batch)
        # Vocabularies padded to different sizes (Qwen2.5 7B vs 1.5B): the tokenizer's ids are the shared part.
        v = min(logits.shape[-1], teacher_logits.shape[-1])
        return generalized_jsd(logits[:, :v], teacher_logits[:, :v], self.beta)


def prompt_len(example: dict[str, Any]) -> int:
    """A causal example's prompt: up to the position that predicts the first target token."""
    return next(i for i, t in enumerate(example["labels"]) if t != IGNORE) + 1

"""Build the student for training: tokenizer, model (hub, local or tiny), dtype, LoRA/QLoRA."""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from distill.records import InputError
from distill.students import model_kind, pretrained, pretrained_tokenizer
from distill.train.config import TINY_STUDENTS, TRAINED_TOKENIZER, TrainConfig
from distill.train.tiny import default_tokenizer, tiny_causal, tiny_seq2seq
from distill.train.tokenizer import train_tokenizer

T5_FUSED = "t5-fused"  # distill/train/t5_fused.py (imports Triton, so not imported here)
WHOLE_NUMBERS_TOKENIZER = f"{TRAINED_TOKENIZER}-numbers"  # the same BPE, frequent numbers kept whole
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(config: TrainConfig, rows: Iterable[dict[str, str]] = (), *,
                   checkpoint: str | Path | None = None) -> Any:
    """The student's tokenizer. `train-bpe` trains one on `rows` (inputs and targets), or reloads it from
    the `checkpoint` being resumed; it is saved with the student, so `load_student` finds it."""
    from transformers import AutoTokenizer

    if config.tokenizer in (TRAINED_TOKENIZER, WHOLE_NUMBERS_TOKENIZER):
        if config.student not in TINY_STUDENTS:
            raise InputError(f"key 'tokenizer': {config.tokenizer} needs a student trained from scratch "
                             f"({', '.join(TINY_STUDENTS)}), not {config.student!r}")
        if checkpoint is not None:
            return AutoTokenizer.from_pretrained(str(checkpoint))
        texts = (text for row in rows for text in (row["input"], row["target"]))
        return train_tokenizer(texts, vocab_size=config.tiny.vocab_size,
                               whole_numbers=config.tokenizer == WHOLE_NUMBERS_TOKENIZER)
    name = config.tokenizer or (None if config.student in TINY_STUDENTS else config.student)
    if name is None:
        return default_tokenizer()
    return pretrained_tokenizer(name)


def packing(config: TrainConfig) -> bool | str:
    """The run's `packing`, where auto means false under `compile: static` (which needs padded length_buckets;
    packed rows ignore them)."""
    return False if config.packing == "auto" and config.compile == "static" else config.packing


def attention(config: TrainConfig, on_gpu: bool, kind: str) -> str:
    """FlashAttention-2 keeps packed examples apart at no cost (varlen kernels), and so does PyTorch's own
    `varlen` (distill/train/varlen.py) where flash-attn is not installed; SDPA does it with a dense
    block-diagonal mask, so packed rows cost attention over their whole length. T5 students on a GPU get
    `t5-fused` (distill/train/t5_fused.py: the relative-position bias read inside the kernel); `t5-flex`
    is opt-in: equal to SDPA on a GPU, and slower than it on the CodeT5-large shape
    (benchmarks/results/train_gpu.md)."""
    from distill.train import varlen

    name, packed = config.attn_implementation, packing(config)
    if name == "auto":
        causal = kind == "causal" and on_gpu  # T5 has no varlen path
        half = config.mixed_precision != "no" or config.dtype in ("bfloat16", "float16")  # FlashAttention's dtypes
        no_dropout = config.student not in TINY_STUDENTS or not config.tiny.dropout  # varlen has no attention dropout
        if causal and importlib.util.find_spec("flash_attn") is not None:
            name = "flash_attention_2"
        elif causal and half and no_dropout and packed is not False and varlen.available():
            name = varlen.NAME
        elif kind == "seq2seq" and on_gpu and varlen.ampere() and importlib.util.find_spec("triton") is not None:
            name = T5_FUSED
        else:
            name = "sdpa"
    if name == varlen.NAME and (kind != "causal" or not on_gpu or packed is False):
        where = f"a {kind} student" + ("" if on_gpu else " on CPU") + (", packing: false" if config.packing is False else
                                                                   ", compile: static (where packing: auto does not pack)" if packed is False else "")
        raise InputError(f"key 'attn_implementation': varlen trains packed causal students on a GPU, not {where}")
    if name in ("t5-flex", T5_FUSED):
        if kind != "seq2seq" or not on_gpu:
            why = "FlexAttention has no backward on CPU" if name == "t5-flex" else "Triton kernels"
            raise InputError(f"key 'attn_implementation': {name} trains T5-family students on a GPU ({why}), "
                             f"not a {kind} student{'' if on_gpu else ' on CPU'}")
        # importing registers the implementation with transformers
        importlib.import_module("distill.train.t5_flex" if name == "t5-flex" else "distill.train.t5_fused")
    return name


def packs(model: Any, kind: str, packing: bool | str, objective: str = "sft") -> bool:
    """Whether training batches are packed rows (no padding), readying a T5 for them. auto: causal students
    on flash_attention_2 or varlen; T5 students on t5-fused (its kernels keep the examples apart:
    distill/train/t5_fused.py `pack`) whose head size the kernels take, except for gkd, whose teacher scores
    the same rows on its own attention. `packing: true` where a T5 cannot pack is refused, naming why."""
    name = getattr(model.config, "_attn_implementation", None)
    if kind == "causal":
        from distill.train import varlen

        return name in ("flash_attention_2", varlen.NAME) if packing == "auto" else bool(packing)
    if packing is False:
        return False
    if name != T5_FUSED or objective == "gkd":
        if packing == "auto":
            return False
        why = "objective gkd" if name == T5_FUSED else f"attention {name}"
        raise InputError(f"key 'packing': T5 students pack on t5-fused attention (a GPU with Triton), and not for "
                         f"gkd; this run has {why}; set packing: auto or false")
    from distill.train import t5_fused

    try:
        t5_fused.pack(model)
    except ValueError as e:
        if packing == "auto":
            return False
        raise InputError(f"key 'packing': {e}") from None
    return True


def set_attention(model: Any, name: str) -> None:
    """`set_attn_implementation`, also on the sub-models with a config of the model's own class, which
    transformers 5.17 leaves as they were (T5's encoder and decoder stacks stayed on SDPA there)."""
    from transformers import PreTrainedModel

    model.set_attn_implementation(name)
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.config._attn_implementation = name


def weights_dtype(config: TrainConfig, on_gpu: bool) -> torch.dtype:
    """float32 for full fine-tuning (bf16 weights would round away small Adam updates); the frozen
    base of a LoRA student is bf16 on a GPU, where the adapters stay float32."""
    if config.dtype != "auto":
        return DTYPES[config.dtype]
    return torch.bfloat16 if config.lora.enabled and on_gpu else torch.float32


def _quantization(config: TrainConfig) -> Any:
    if config.lora.quantize == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError(f"key 'lora.quantize': {config.lora.quantize} (QLoRA) needs bitsandbytes installed")
    from transformers import BitsAndBytesConfig

    if config.lora.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_model(config: TrainConfig, tokenizer: Any, *, on_gpu: bool, weights_from: str | Path | None = None) -> Any:
    """The student, ready to train. `weights_from`: a checkpoint dir to resume (full model or adapter)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    dtype = weights_dtype(config, on_gpu)
    full_checkpoint = weights_from is not None and not config.lora.enabled
    source = str(weights_from) if full_checkpoint else config.student
    if source in TINY_STUDENTS:
        build = tiny_seq2seq if source == "tiny-t5" else tiny_causal
        model = build(tokenizer, d_model=config.tiny.d_model, layers=config.tiny.layers, heads=config.tiny.heads,
                      d_ff=config.tiny.d_ff or None, dropout=config.tiny.dropout)
        model.to(dtype)
        set_attention(model, attention(config, on_gpu, model_kind(model.config)))
    else:
        kind = model_kind(pretrained(AutoConfig, source, "model"))
        auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
        kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attention(config, on_gpu, kind)}
        if (quant := _quantization(config)) is not None:
            kwargs["quantization_config"] = quant
        model = auto.from_pretrained(source, **kwargs)
    if config.kind != "auto" and config.kind != model_kind(model.config):
        raise InputError(f"key 'kind': {config.kind!r}, but {config.student!r} is {model_kind(model.config)}")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora.enabled:
        model = _add_lora(model, config, weights_from)
    return model


def _add_lora(model: Any, config: TrainConfig, weights_from: str | Path | None) -> Any:
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training

    if config.lora.quantize != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if weights_from is not None:
        return PeftModel.from_pretrained(model, str(weights_from), is_trainable=True)
    task = TaskType.SEQ_2_SEQ_LM if model_kind(model.config) == "seq2seq" else TaskType.CAUSAL_LM
    lora = LoraConfig(task_type=task, r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules)
    return get_peft_model(model, lora)


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

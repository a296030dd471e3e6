"""Tiny students built from a config (random weights): for tests, CPU quickstarts and smoke runs.

No download: the tokenizer defaults to `ByT5Tokenizer()` (bytes, needs no files); `tokenizer: train-bpe`
trains a digit-splitting BPE on the training set instead (much shorter sequences, faster on CPU).
"""
from __future__ import annotations

from typing import Any


def default_tokenizer() -> Any:
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def tiny_seq2seq(tokenizer: Any = None, d_model: int = 128, layers: int = 3, heads: int = 4,
                 d_ff: int | None = None, dropout: float = 0.0) -> Any:
    """A T5-shaped encoder-decoder (a few M parameters at the defaults)."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = tokenizer or default_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // heads, d_ff=d_ff or 4 * d_model,
        num_layers=layers, num_decoder_layers=layers, num_heads=heads, dropout_rate=dropout,
        feed_forward_proj="gated-gelu", tie_word_embeddings=True,  # tied: logits scaled by d_model**-0.5
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5ForConditionalGeneration(config)


def tiny_causal(tokenizer: Any = None, d_model: int = 128, layers: int = 3, heads: int = 4,
                d_ff: int | None = None, dropout: float = 0.0, max_positions: int = 2048) -> Any:
    """A Llama-shaped decoder (a few M parameters at the defaults)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or default_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=d_ff or 4 * d_model,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, attention_dropout=dropout,
    )
    return LlamaForCausalLM(config)

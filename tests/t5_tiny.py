"""A tiny T5 and a padded batch for it, shared by the tests of T5's attention routes (t5-flex, t5-fused)."""
import torch


def tiny_t5(dropout: float = 0.0, device: str = "cpu", d_kv: int = 16) -> torch.nn.Module:
    """Two layers a stack, 8 relative-position buckets (so 40 tokens reach the log-spaced ones), on SDPA."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=128, d_model=64, d_kv=d_kv, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                      dropout_rate=dropout, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16)
    config._attn_implementation = "sdpa"
    return T5ForConditionalGeneration(config).to(device)


def t5_batch(device: str) -> dict[str, torch.Tensor]:
    """Four sources of 40 tokens, two of them padded; 33 target tokens, one row's last 13 ignored."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 128, (4, 40), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    mask[2, 7:] = 0
    labels = torch.randint(3, 128, (4, 33), generator=g)
    labels[3, 20:] = -100
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}

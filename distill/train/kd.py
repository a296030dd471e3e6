"""Distillation losses on the teacher's distribution (summed over target positions, like SFT's).

- `topk_kl`: offline kd. The teacher's stored top-k probabilities plus one bucket for the rest of
  the vocabulary (1 - their sum), against the student's probabilities of the same k tokens and of
  everything else. A position whose teacher is the data's one-hot (k entries: the label at log-prob
  0, the others at -inf) costs exactly the cross-entropy of the label.
- `generalized_jsd`: on-policy gkd with the full teacher distribution (GKD, Agarwal et al. 2024, in
  TRL's convention): beta 0 is the forward KL(teacher || student), beta 1 the reverse
  KL(student || teacher), in between beta KL(T || M) + (1 - beta) KL(S || M), M = beta T + (1 - beta) S.
"""
from __future__ import annotations

import math

import torch


def topk_kl(logits: torch.Tensor, top_ids: torch.Tensor, top_logprobs: torch.Tensor) -> torch.Tensor:
    """Summed KL(teacher_topk+rest || student_topk+rest) over rows: logits (N, V), top_* (N, K)."""
    logits = logits.float()
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    student_top = logits.gather(-1, top_ids) - log_z  # log q of the teacher's k tokens
    teacher = top_logprobs.float().exp()
    total = teacher.sum(-1, keepdim=True)
    teacher = torch.where(total > 1, teacher / total, teacher)  # fp16 rounding can push the sum past 1
    rest = (1 - teacher.sum(-1)).clamp(min=0)
    # log q(rest): the student's mass off the k tokens, computed from its logits (no 1 - sum cancellation).
    masked = logits.scatter(-1, top_ids, float("-inf"))
    student_rest = torch.logsumexp(masked, dim=-1) - log_z.squeeze(-1)
    kl_top = torch.where(teacher > 0, teacher * (teacher.clamp(min=1e-30).log() - student_top), 0.0).sum(-1)
    kl_rest = torch.where(rest > 0, rest * (rest.clamp(min=1e-30).log() - student_rest), 0.0)
    return (kl_top + kl_rest).sum()


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed generalised JSD over rows (N, V) of logits; beta in [0, 1] (0: forward KL, 1: reverse KL)."""
    s = torch.log_softmax(student_logits.float(), dim=-1)
    t = torch.log_softmax(teacher_logits.float(), dim=-1)

    def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # KL(P || Q) from log-probabilities, per row
        return torch.where(p > float("-inf"), p.exp() * (p - q), 0.0).sum(-1)

    if beta == 0:
        return kl(t, s).sum()
    if beta == 1:
        return kl(s, t).sum()
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), dim=0)
    return (beta * kl(t, m) + (1 - beta) * kl(s, m)).sum()

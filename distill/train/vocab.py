"""The kd and gkd objectives compare distributions token by token, so teacher and student must share
one tokenizer. `check_shared_vocab` refuses a pair whose vocabularies differ, from the tokenizers alone
(no model is loaded)."""
from __future__ import annotations

from typing import Any

from distill.records import InputError

HINT = ("kd and gkd compare the two models' distributions token by token, so they need one tokenizer: pick a "
        "student of the teacher's family (LLaMA-2 70B -> 7B, Qwen2.5-Math-7B -> 1.5B), give a from-scratch "
        "student the teacher's tokenizer (--tokenizer TEACHER_DIR), or train with --objective sft on the "
        "teacher's text; across tokenizers a token mapping (ULD, Boizard et al. 2024) would be needed, which "
        "distill does not do")


def vocabulary(tokenizer: Any) -> dict[str, int]:
    return dict(tokenizer.get_vocab())


def check_shared_vocab(teacher_tokenizer: Any, student_tokenizer: Any, teacher: str, student: str) -> None:
    """An InputError naming the first differences when the two tokenizers map tokens to different ids."""
    t, s = vocabulary(teacher_tokenizer), vocabulary(student_tokenizer)
    if t == s:
        return
    differ = sorted((set(t.items()) ^ set(s.items())), key=lambda kv: kv[1])[:3]
    shown = ", ".join(f"{tok!r}->{i} in {'the teacher' if t.get(tok) == i else 'the student'} only" for tok, i in differ)
    raise InputError(f"teacher {teacher} and student {student} have different vocabularies ({len(t):,} vs {len(s):,} "
                     f"tokens; {shown}): {HINT}")


def check_ids_fit(max_id: int, student_tokenizer: Any, student: str, data: str) -> None:
    """Token ids stored in the data beyond the student's vocabulary: another tokenizer wrote them."""
    if max_id >= len(student_tokenizer):
        raise InputError(f"the teacher's log-probs in the data name token id {max_id}, beyond the "
                         f"{len(student_tokenizer):,} tokens of the student {student}'s tokenizer: {HINT}", data)

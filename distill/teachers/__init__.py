"""Teacher backends, chosen by a spec: `openai:MODEL`, `hf:MODEL`, `vllm:MODEL`, `world:...`."""
from __future__ import annotations

import inspect
from typing import Any

from distill.teachers.base import Completion, Request, Teacher, TeacherError

__all__ = ["Completion", "Request", "Teacher", "TeacherError", "make_teacher"]

KINDS = ("openai", "hf", "vllm", "world")


def make_teacher(spec: str, **options: Any) -> Teacher:
    """Build the teacher a spec names. Options left at None are ignored; an option the backend
    does not take (say `base_url` for `hf:`) is an error rather than silently dropped."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS or (not rest and kind != "world"):
        raise TeacherError(f"unknown teacher {spec!r} (use openai:MODEL, hf:MODEL, vllm:MODEL or world:)")
    options = {k: v for k, v in options.items() if v is not None}
    if kind == "world":
        from distill.world.teacher import WorldTeacher

        return WorldTeacher.from_spec(rest)
    if kind == "openai":
        from distill.teachers.openai_compat import OpenAITeacher as cls
    elif kind == "hf":
        from distill.teachers.local import HFTeacher as cls
    else:
        from distill.teachers.local import VLLMTeacher as cls
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        raise TeacherError(f"teacher {kind}: does not take {', '.join(sorted(unknown))}")
    return cls(rest, **options)

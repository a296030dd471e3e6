"""Teacher backends, one registry entry each, chosen by a spec `KIND:MODEL` (`openai:gpt-4o-mini`,
`hf:PATH`, `vllm:MODEL`, or a plugged-in kind such as the built-in world's `world:`).

A backend is a `TeacherBackend`: a factory `make(model, **options)` whose keyword parameters
are the options it takes (an option it does not take is an error, not silently dropped), an
optional `make_writer` for `distill synth` (a teacher that also writes questions), and an
optional `audit` that `distill generate` calls after a run (the world uses it to count how many
of its injected errors the checkers rejected). Register your own with `register_teacher`.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.registry import Registry
from distill.teachers.base import Completion, Request, Teacher, TeacherError

__all__ = ["Completion", "Request", "Teacher", "TeacherBackend", "TeacherError", "TEACHERS", "make_teacher",
           "register_teacher", "teacher_audit"]


@dataclass(frozen=True)
class TeacherBackend:
    kind: str
    make: Callable[..., Teacher]  # (model, **options) -> Teacher
    make_writer: Callable[..., Teacher] | None = None  # synth: a teacher that also writes questions
    audit: Callable[[str, Path, int, bool], str] | None = None  # (model, output, round size, greedy) -> a summary
    needs_model: bool = True  # `kind:` alone is not a spec


TEACHERS: Registry[TeacherBackend] = Registry("teacher")


def register_teacher(backend: TeacherBackend, *, replace: bool = False) -> TeacherBackend:
    return TEACHERS.register(backend.kind, backend, replace=replace)


def _backend(spec: str) -> tuple[TeacherBackend, str]:
    kind, sep, rest = spec.partition(":")
    backend = TEACHERS.find(kind) if sep else None
    if backend is None or (backend.needs_model and not rest):
        known = ", ".join(f"{k}:MODEL" if TEACHERS.get(k).needs_model else f"{k}:" for k in TEACHERS.names())
        raise TeacherError(f"unknown teacher {spec!r} (use {known})")
    return backend, rest


def make_teacher(spec: str, *, writer: bool = False, **options: Any) -> Teacher:
    """Build the teacher a spec names (`writer`: one that also writes questions, for synth).
    Options left at None are ignored; one the backend does not take is an error."""
    backend, rest = _backend(spec)
    factory = (backend.make_writer or backend.make) if writer else backend.make
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in options if k not in params]
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(unknown))
            raise TeacherError(f"{flags}: not an option of {backend.kind}: teachers")
    return factory(rest, **options)


def teacher_audit(spec: str, out: Path, round_size: int, greedy: bool) -> str | None:
    """The backend's own report on a finished run, if it has one."""
    backend, rest = _backend(spec)
    return backend.audit(rest, out, round_size, greedy) if backend.audit else None


class _Lazy:
    """A backend class imported only when a teacher is built; its keyword parameters are the
    factory's (so that `make_teacher` can check options without importing torch or openai)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _cls(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)

    @property
    def __signature__(self) -> inspect.Signature:
        init = inspect.signature(self._cls().__init__)
        return init.replace(parameters=list(init.parameters.values())[1:])

    def __call__(self, model: str, **options: Any) -> Teacher:
        return self._cls()(model, **options)


register_teacher(TeacherBackend("openai", _Lazy("distill.teachers.openai_compat", "OpenAITeacher")))
register_teacher(TeacherBackend("hf", _Lazy("distill.teachers.replicas", "HFReplicas")))  # HFTeacher x --gpus
register_teacher(TeacherBackend("vllm", _Lazy("distill.teachers.local", "VLLMTeacher")))

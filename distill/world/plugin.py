"""The built-in world plugs into the registries like any user's code: a data set `world:...`
and a teacher `world:...` (which also writes questions for synth, and audits a generate run).
Loaded through the `distill.plugins` entry point (see pyproject.toml)."""
from __future__ import annotations

from pathlib import Path

from distill.data import register_dataset
from distill.teachers import Teacher, TeacherBackend, register_teacher


def _teacher(model: str) -> Teacher:
    from distill.world.teacher import WorldTeacher

    return WorldTeacher.from_spec(model)


def _writer(model: str) -> Teacher:
    from distill.world.synth import WorldSynthTeacher

    return WorldSynthTeacher.from_spec(model)


def _audit(model: str, out: Path, round_size: int, greedy: bool) -> str:
    from distill.world.audit import audit
    from distill.world.teacher import WorldTeacher

    return audit(out, WorldTeacher.from_spec(model), round_size, greedy).summary()


def _dataset(spec: str, root: Path | None):  # -> distill.data.DataSet
    from distill.world.generate import load_world

    return load_world(spec)


register_dataset("world", _dataset)
register_teacher(TeacherBackend("world", _teacher, make_writer=_writer, audit=_audit, needs_model=False))

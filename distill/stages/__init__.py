"""Stages: the typed functions the CLI and recipes call (validate, generate, synth, mix, train, eval).

A stage is one registry entry: a dataclass of options (field names are the long CLI flag names,
`-` spelt `_`) and a function that runs it and returns a result, plus a function that shows the
result on the terminal. A Click command builds the options from its flags; `distill run` builds
them from a recipe's mapping (`build_options`, which converts and checks every value); Python
users call `run_stage("mix", MixStageOptions(...))` or the stage module's `run` directly.
"""
from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from distill.records import InputError
from distill.registry import Registry


@dataclass(frozen=True)
class Stage:
    name: str
    options: type  # a dataclass
    run: Callable[[Any], Any]
    show: Callable[[Any], None] = lambda result: None
    inputs: str | None = None  # the field that takes a recipe stage's `args` (positional inputs)
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)  # other spellings -> field
    resume: str | None = None  # the flag an interrupted stage is rerun with, if it has one
    outputs: tuple[str, ...] = ("output",)  # fields that name what the stage writes

    def field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.options)]

    def field_for(self, key: str) -> str | None:
        key = key.replace("-", "_")
        key = self.aliases.get(key, key)
        return key if key in self.field_names() else None


STAGES: Registry[Stage] = Registry("stage")
_BUILTIN = ("validate", "generate", "synth", "mix", "train", "eval")


def get_stage(name: str) -> Stage:
    if name in _BUILTIN:
        importlib.import_module(f"distill.stages.{name}")  # each module registers its stage on import
    return STAGES.get(name)


def _convert(value: Any, hint: Any, what: str) -> Any:
    """`value` (from YAML) as the field's type: numbers from strings, comma lists as tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], what) if len(args) == 1 else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{what}: expected true or false, got {value!r}")
    if hint in (int, float):
        try:
            return hint(value) if not isinstance(value, bool) else _fail(what, hint, value)
        except (TypeError, ValueError):
            _fail(what, hint, value)
    if hint is str:
        if isinstance(value, (dict, list)):
            _fail(what, hint, value)
        return str(value)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
        (inner, *_) = typing.get_args(hint) or (str,)
        return tuple(_convert(v.strip() if isinstance(v, str) else v, inner, what) for v in items if v != "")
    return value


def _fail(what: str, hint: Any, value: Any) -> typing.NoReturn:
    raise InputError(f"{what}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def build_options(stage: Stage, values: Mapping[str, Any], args: list[str] | None = None, *,
                  where: str = "") -> Any:
    """The stage's options from a mapping of flag names (a recipe's `options`) and its inputs."""
    hints = typing.get_type_hints(stage.options)
    kwargs: dict[str, Any] = {}
    prefix = f"{where}: " if where else ""
    for key, value in values.items():
        name = stage.field_for(key)
        if name is None:
            raise InputError(f"{prefix}unknown option {key!r} for `distill {stage.name}`")
        kwargs[name] = _convert(value, hints[name], f"{prefix}option {key!r}")
    if args:
        if stage.inputs is None:
            raise InputError(f"{prefix}`distill {stage.name}` takes no positional inputs")
        many = typing.get_origin(hints[stage.inputs]) is tuple
        if not many and len(args) != 1:
            raise InputError(f"{prefix}`distill {stage.name}` takes one input, got {len(args)}")
        kwargs[stage.inputs] = _convert(list(args) if many else args[0], hints[stage.inputs], f"{prefix}args")
    missing = [f.name for f in dataclasses.fields(stage.options)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs]
    if missing:
        raise InputError(f"{prefix}missing required option {'--' + missing[0].replace('_', '-')!r}")
    return stage.options(**kwargs)


def run_stage(name: str, options: Any, *, show: bool = True) -> Any:
    stage = get_stage(name)
    result = stage.run(options)
    if show:
        stage.show(result)
    return result


def register_stage(stage: Stage) -> Stage:
    return STAGES.register(stage.name, stage)


__all__ = ["STAGES", "Stage", "build_options", "get_stage", "register_stage", "run_stage"]

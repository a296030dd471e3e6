"""Recipes: one YAML file describes a run's stages (generate -> mix -> train -> eval).

Each stage names a registered stage (`distill.stages`: the functions behind the commands) with
its options spelt as the command's flags, so a recipe means what the equivalent shell commands
mean; it is checked against the stage's typed options before anything runs (an unknown key or a
value of the wrong type is an error naming it), and `distill run` calls the stage functions. A stage that finished writes a marker with
the hash of its arguments; a rerun skips it, and an interrupted stage is rerun with
`--resume`-like behaviour that the commands themselves provide (journals, checkpoints).

    name: quickstart
    run_dir: runs/quickstart
    smoke: {stages: {train: {max-steps: 20}}}      # `--smoke` overrides (options, or stage keys)
    stages:
      - name: generate-pot
        command: generate
        options: {thought: pot, data: "world:train", teacher: "world:", output: "{run_dir}/pot.jsonl"}
      - name: mix
        command: mix
        args: ["{run_dir}/pot.jsonl"]
        options: {output: "{run_dir}/mtd"}
"""
from __future__ import annotations

import copy
import fnmatch
import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.records import InputError, read_yaml_mapping
from distill.resources import find_recipe, shipped_recipes

STAGE_KEYS = {"name", "command", "args", "options"}
RECIPE_KEYS = {"name", "description", "run_dir", "stages", "smoke"}


@dataclass
class Stage:
    name: str
    command: str
    args: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The command line this stage stands for (after its positional args)."""
        out = list(self.args)
        for key, value in self.options.items():
            flag = f"--{key.replace('_', '-')}" if len(key) > 1 else f"-{key}"
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, bool):
                    if v:
                        out.append(flag)
                else:
                    out += [flag, str(v)]
        return out

    def fingerprint(self) -> str:
        blob = json.dumps([self.command, self.argv()], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Recipe:
    name: str
    run_dir: Path
    stages: list[Stage]
    path: Path

    def marker(self, stage: Stage) -> Path:
        return self.run_dir / ".stages" / f"{stage.name}.done"

    def is_done(self, stage: Stage) -> bool:
        m = self.marker(stage)
        return m.is_file() and m.read_text().strip() == stage.fingerprint()

    def mark_done(self, stage: Stage) -> None:
        m = self.marker(stage)
        m.parent.mkdir(parents=True, exist_ok=True)
        m.write_text(stage.fingerprint() + "\n")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`, nested mappings key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _subst(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in variables.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, list):
        return [_subst(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v, variables) for k, v in value.items()}
    return value


def _as_stage_override(override: dict[str, Any]) -> dict[str, Any]:
    """`{max-steps: 20}` is shorthand for `{options: {max-steps: 20}}`; stage keys stay as they are."""
    options = {k: v for k, v in override.items() if k not in STAGE_KEYS}
    rest = {k: v for k, v in override.items() if k in STAGE_KEYS}
    return merge(rest, {"options": options}) if options else rest


def load_recipe(path: str | os.PathLike, *, smoke: bool = False, run_dir: str | None = None) -> Recipe:
    """Parse and check a recipe (a path, or a shipped recipe's name); with `smoke`, its `smoke.stages`
    overrides are applied."""
    if (found := find_recipe(str(path))) is None:
        raise InputError(f"no recipe {str(path)!r}: not a file, nor a shipped recipe ({', '.join(shipped_recipes())})")
    path = found
    raw = read_yaml_mapping(path, "recipe", config=True)
    if unknown := set(raw) - RECIPE_KEYS:
        raise InputError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(RECIPE_KEYS))})", path)
    if not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise InputError("key 'stages' must be a non-empty list", path)
    name = str(raw.get("name", path.stem))
    rdir = run_dir or str(raw.get("run_dir", f"runs/{name}"))
    overrides = (raw.get("smoke") or {}).get("stages", {}) if smoke else {}
    names = {str(e.get("name", e.get("command"))) for e in raw["stages"] if isinstance(e, dict)}
    if unknown := set(overrides) - names:
        raise InputError(f"smoke: unknown stage {sorted(unknown)[0]!r}", path)
    stages, seen = [], set()
    for i, entry in enumerate(raw["stages"]):
        where = f"stages[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be a mapping", path)
        if unknown := set(entry) - STAGE_KEYS:
            raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}", path)
        if "command" not in entry:
            raise InputError(f"{where}: missing key 'command'", path)
        sname = str(entry.get("name", entry["command"]))
        if sname in seen:
            raise InputError(f"{where}: duplicate stage name {sname!r}", path)
        seen.add(sname)
        entry = merge(entry, _as_stage_override(overrides.get(sname, {})))
        entry = _subst(entry, {"run_dir": rdir})
        stages.append(Stage(sname, entry["command"], list(entry.get("args", [])), dict(entry.get("options") or {})))
    return Recipe(name, Path(rdir), stages, path)


def stage_options(recipe: Recipe, stage: Stage, *, expand: bool = False) -> Any:
    """The typed options of a recipe stage (`expand`: shell-style globs in its inputs expanded)."""
    from distill.stages import build_options, get_stage

    entry = get_stage(stage.command)
    args = [p for arg in stage.args for p in (sorted(glob.glob(arg)) or [arg])] if expand else list(stage.args)
    return build_options(entry, stage.options, args, where=f"{recipe.path}: stage {stage.name!r}")


def check_recipe(recipe: Recipe) -> list[str]:
    """Problems found without running anything: unknown stages or options, values of the wrong
    type, missing inputs that no earlier stage writes."""
    from distill.stages import STAGES, get_stage

    problems = []
    produced = set()
    for stage in recipe.stages:
        where = f"{recipe.path}: stage {stage.name!r}"
        try:
            entry = get_stage(stage.command)
        except InputError:
            problems.append(f"{where}: unknown command {stage.command!r} (known: {', '.join(STAGES.names())})")
            continue
        try:
            stage_options(recipe, stage)
        except InputError as exc:
            problems.append(str(exc))
        for arg in stage.args:
            looks_like_path = "/" in arg or arg.endswith((".jsonl", ".json", ".csv", ".yaml"))
            if looks_like_path and not glob.glob(arg) and not any(fnmatch.fnmatch(p, arg) for p in produced):
                problems.append(f"{where}: input {arg!r} does not exist and no earlier stage writes it")
        for key, value in stage.options.items():
            if entry.field_for(key) in entry.outputs:
                produced.add(str(value))
    return problems

"""Files shipped inside the package (distill/prompts, distill/recipes), found with importlib.resources.

The checkout keeps top-level `prompts` and `recipes` links to these folders, so `recipes/quickstart.yaml`
names the same file in a checkout and, through `find_recipe`, in an installed wheel.
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def resource(*parts: str) -> Path:
    """A file or folder shipped in the package, as a path (`resource("prompts", "cot.yaml")`)."""
    root = files("distill")
    if not isinstance(root, Path):  # every reader opens these files by path, so a zipped install cannot work
        raise RuntimeError(f"distill must be installed as files, not zipped ({root})")
    return root.joinpath(*parts)


def prompt_file(name: str | os.PathLike) -> Path:
    """A prompt file named as a thought or data set names it: a bare name is one under prompts/,
    anything else a path."""
    path = Path(name)
    return path if path.is_absolute() or path.parent != Path(".") else resource("prompts", str(path))


def find_recipe(name: str) -> Path | None:
    """The recipe file at path `name`, else the shipped one it names: `quickstart`, `quickstart.yaml`
    or `recipes/quickstart.yaml` (a relative path that does not exist here); else None."""
    path = Path(name)
    if path.is_file():
        return path
    parts = list(path.parts)[1:] if path.parts[:1] == ("recipes",) else list(path.parts)
    if path.is_absolute() or not parts:
        return None
    if Path(parts[-1]).suffix not in (".yaml", ".yml"):
        parts[-1] += ".yaml"
    shipped = resource("recipes", *parts)
    return shipped if shipped.is_file() else None


def shipped_recipes() -> list[str]:
    """The run recipes shipped in the package, by name."""
    return sorted(p.stem for p in resource("recipes").glob("*.yaml"))

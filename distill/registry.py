"""Registries: a thought, a data set, a teacher backend is one named entry.

The core registers its own entries on import; anything else (the built-in world, a user's code)
plugs in the same way: call `register` from Python, or name a module that does so in the
`distill.plugins` entry-point group (or in `$DISTILL_PLUGINS`, comma-separated), which is
imported the first time a registry is asked for a name it does not hold.
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from distill.records import InputError

T = TypeVar("T")
PLUGIN_GROUP = "distill.plugins"
_loaded = False


def load_plugins() -> None:
    """Import every plugin module once (entry points, then `$DISTILL_PLUGINS`)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()
    for name in filter(None, (p.strip() for p in os.environ.get("DISTILL_PLUGINS", "").split(","))):
        importlib.import_module(name)


class Registry(Generic[T]):
    """Named entries of one kind; an unknown name is one error listing the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        key = name.lower()
        if key in self._entries and not replace and self._entries[key] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered already (pass replace=True)")
        self._entries[key] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name.lower(), None)

    def find(self, name: str) -> T | None:
        key = name.lower()
        if key not in self._entries:
            load_plugins()
        return self._entries.get(key)

    def get(self, name: str) -> T:
        entry = self.find(name)
        if entry is None:
            raise InputError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return entry

    def names(self) -> list[str]:
        load_plugins()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

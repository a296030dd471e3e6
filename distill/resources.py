"""Files shipped with the package (prompts, recipes, cue sets), found the same way in a checkout,
an editable install and a wheel."""
from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def resource(*parts: str) -> Path:
    return _ROOT.joinpath(*parts)

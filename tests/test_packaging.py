"""Shipped data (prompts, recipes) is found inside the package, whatever the working directory.
(.ci/wheel.sh runs the same from an installed wheel in a fresh venv.)"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import main
from distill.resources import find_recipe, resource, shipped_recipes

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_links_name_the_package_data() -> None:
    assert (ROOT / "prompts").resolve() == resource("prompts").resolve()
    assert (ROOT / "recipes").resolve() == resource("recipes").resolve()
    assert resource("py.typed").is_file()


def test_package_data_globs_cover_every_shipped_file() -> None:
    """Every file under distill/prompts and distill/recipes matches a package-data pattern (else the
    wheel would lack it)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["distill"]
    package = resource()
    files = [p.relative_to(package) for d in ("prompts", "recipes") for p in resource(d).rglob("*") if p.is_file()]
    assert len(files) > 20
    for f in files:
        assert any(f.match(g) and len(f.parts) == len(Path(g).parts) for g in globs), f


def test_recipes_resolve_by_name_or_checkout_path_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no recipes/ here
    shipped = resource("recipes", "quickstart.yaml")
    for name in ("quickstart", "quickstart.yaml", "recipes/quickstart.yaml"):
        assert find_recipe(name) == shipped, name
    assert find_recipe("recipes/accelerate/cpu-2proc.yaml") == resource("recipes", "accelerate", "cpu-2proc.yaml")
    for missing in ("nope", "recipes/nope.yaml", "/no/such/recipes/quickstart.yaml", ""):
        assert find_recipe(missing) is None, missing
    mine = tmp_path / "recipes" / "quickstart.yaml"  # a user's own file at that path comes first
    mine.parent.mkdir()
    mine.write_text("name: mine\n")
    assert find_recipe("recipes/quickstart.yaml") == Path("recipes/quickstart.yaml")
    assert "quickstart" in shipped_recipes() and "cpu-2proc" not in shipped_recipes()


def test_run_takes_a_shipped_recipe_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "quickstart", "--dry-run", "--smoke", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "is valid: 4 stages" in result.output
    result = CliRunner().invoke(main, ["run", "no-such-recipe", "--dry-run"])
    assert result.exit_code == 2
    assert "no recipe 'no-such-recipe'" in result.output and "quickstart" in result.output
    assert not (tmp_path / "runs").exists()

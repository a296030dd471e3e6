from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from distill.progress import console
from distill.recipe import check_recipe, load_recipe, stage_options


@click.command(help="Run a recipe's stages in order (a RECIPE.yaml path or the name of a shipped recipe such as "
                    "`quickstart`); finished stages are skipped on a rerun, an interrupted one resumes.",
               epilog="\b\nExamples:\n  distill run quickstart --smoke\n  distill run recipes/etd-codet5p-770m.yaml --dry-run")
@click.argument("recipe_path", metavar="RECIPE")
@click.option("--dry-run", is_flag=True, help="Check the recipe and print the plan; run nothing.")
@click.option("--smoke", is_flag=True, help="Apply the recipe's `smoke` overrides (a small, fast run).")
@click.option("--run-dir", default=None, help="Override the recipe's run_dir.")
def command(recipe_path: str, dry_run: bool, smoke: bool, run_dir: str | None) -> None:
    from distill.stages import get_stage, run_stage

    recipe = load_recipe(recipe_path, smoke=smoke, run_dir=run_dir)
    problems = check_recipe(recipe)
    for stage in recipe.stages:
        state = "done" if recipe.is_done(stage) else "to run"
        console.print(f"[bold]{stage.name}[/] ({state}): distill {stage.command} {' '.join(stage.argv())}")
    if problems:
        for p in problems:
            click.secho(f"error: {p}", fg="red", err=True)
        sys.exit(2)
    if dry_run:
        console.print(f"recipe {recipe.path} is valid: {len(recipe.stages)} stages, run dir {recipe.run_dir}")
        return
    times: list[tuple[str, float, str]] = []
    for stage in recipe.stages:
        if recipe.is_done(stage):
            console.print(f"[dim]skip {stage.name}: finished earlier[/]")
            times.append((stage.name, 0.0, "skipped"))
            continue
        entry = get_stage(stage.command)
        options = stage_options(recipe, stage, expand=True)
        started = recipe.marker(stage).with_suffix(".started")
        if started.exists() and entry.resume:  # an interrupted stage continues where it stopped
            options = type(options)(**{**vars(options), entry.resume: True})
        console.rule(f"{stage.name}: distill {stage.command}")
        started.parent.mkdir(parents=True, exist_ok=True)
        started.touch()
        t0 = time.perf_counter()
        try:
            run_stage(stage.command, options)
        except BaseException:
            times.append((stage.name, time.perf_counter() - t0, "failed"))
            _summary(recipe, times)
            raise
        times.append((stage.name, time.perf_counter() - t0, "done"))
        recipe.mark_done(stage)
        started.unlink()
    _summary(recipe, times)
    console.print(f"[green]recipe {recipe.name} finished[/]: outputs in {recipe.run_dir}")


def _summary(recipe, times: list[tuple[str, float, str]]) -> None:  # type: ignore[no-untyped-def]
    """Seconds per stage: on the terminal and in RUN_DIR/stages.json."""
    table = Table(title=f"distill run {recipe.name}")
    for column in ("stage", "seconds", "status"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for name, seconds, status in times:
        table.add_row(name, f"{seconds:.1f}", status)
    console.print(table)
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"stage": n, "seconds": round(s, 2), "status": st} for n, s, st in times]
    (recipe.run_dir / "stages.json").write_text(json.dumps(rows, indent=2) + "\n")

from __future__ import annotations

import glob
import sys

import click

from distill.progress import console
from distill.recipe import Recipe, Stage, check_recipe, load_recipe


def _argv(stage: Stage, cmd: click.Command, recipe: Recipe) -> list[str]:
    argv = []
    for arg in stage.args:  # shell-style globs in inputs, as the shell would expand them
        argv += sorted(glob.glob(arg)) or [arg]
    argv += stage.argv()[len(stage.args):]
    started = recipe.marker(stage).with_suffix(".started")
    if started.exists() and any(p.name == "resume" for p in cmd.params):
        argv.append("--resume")  # an interrupted stage continues where it stopped
    return argv


@click.command(help="Run RECIPE's stages in order (a YAML path, or a shipped recipe's name such as quickstart); "
                    "finished stages are skipped on a rerun.")
@click.argument("recipe_path", metavar="RECIPE")
@click.option("--dry-run", is_flag=True, help="Check the recipe and print the plan; run nothing.")
@click.option("--smoke", is_flag=True, help="Apply the recipe's `smoke` overrides (a small, fast run).")
@click.option("--run-dir", default=None, help="Override the recipe's run_dir.")
@click.pass_context
def command(ctx: click.Context, recipe_path: str, dry_run: bool, smoke: bool, run_dir: str | None) -> None:
    recipe = load_recipe(recipe_path, smoke=smoke, run_dir=run_dir)
    group = ctx.parent.command if ctx.parent else None
    assert isinstance(group, click.Group)
    problems = check_recipe(recipe, group, ctx)
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
    for stage in recipe.stages:
        if recipe.is_done(stage):
            console.print(f"[dim]skip {stage.name}: finished earlier[/]")
            continue
        cmd = group.get_command(ctx, stage.command)
        assert cmd is not None
        argv = _argv(stage, cmd, recipe)
        console.rule(f"{stage.name}: distill {stage.command}")
        started = recipe.marker(stage).with_suffix(".started")
        started.parent.mkdir(parents=True, exist_ok=True)
        started.touch()
        cmd.main(args=argv, prog_name=f"distill {stage.command}", standalone_mode=False)
        recipe.mark_done(stage)
        started.unlink()
    console.print(f"[green]recipe {recipe.name} finished[/]: outputs in {recipe.run_dir}")

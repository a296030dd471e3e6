#!/usr/bin/env bash
# The wheel works outside the checkout: build it from the tracked files, check that it holds every
# shipped data file, install it with its declared dependencies into a fresh venv, and run the shipped
# quickstart recipe (`--smoke`) from an empty directory, by path and by name.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # the PoT sandbox runs as another user and needs to read the venv's Python

# Build from a copy of the tracked (and new, not ignored) files: no build/ or stale files from the checkout.
mkdir "$work/src"
git -C "$root" ls-files -z --cached --others --exclude-standard | (cd "$root" && xargs -0 cp -P --parents -t "$work/src")
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/pip" install -q)
"${pip[@]}" --upgrade pip
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$work/src"
wheel=$(echo "$work"/dist/distill_math-*.whl)

"$python" - "$wheel" "$work/src" <<'PY'
import sys, zipfile
from pathlib import Path

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
src = Path(sys.argv[2])
shipped = [p.relative_to(src).as_posix() for d in ("prompts", "recipes") for p in (src / "distill" / d).rglob("*") if p.is_file()]
missing = sorted(set(shipped + ["distill/py.typed"]) - names)
assert not missing, f"not in the wheel: {missing}"
print(f"wheel holds all {len(shipped)} prompt and recipe files and py.typed")
PY

"${pip[@]}" torch==2.13.0  # the CPU build from local disk; then the wheel and everything it declares
"${pip[@]}" "$wheel"
"$work/venv/bin/pip" check
mkdir "$work/empty"
cd "$work/empty"
env -u PYTHONPATH "$work/venv/bin/python" -c 'import distill, sys; assert distill.__file__.startswith(sys.prefix), distill.__file__'
env -u PYTHONPATH "$work/venv/bin/distill" run quickstart --dry-run
env -u PYTHONPATH "$work/venv/bin/distill" run recipes/quickstart.yaml --smoke --run-dir "$work/run"
test -f "$work/run/eval/config.json"
echo "wheel: quickstart --smoke ran from an installed wheel"

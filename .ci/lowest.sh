#!/usr/bin/env bash
# The dependency floors are true: a fresh venv with the lowest versions pyproject.toml allows for
# transformers, accelerate, peft and datasets (pip constraints: nothing else is pinned) runs the training
# and eval tests. torch is the CPU build 2.13.0, the one this machine installs from disk; the torch floor
# is the GPU image's 2.11 (README, "Dependencies").
# LOWEST_VENV=DIR keeps the venv in DIR (reused when its constraints are unchanged); else a temporary one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
venv=${LOWEST_VENV:-$tmp/venv}

# The floors, read from pyproject.toml so that this step and the declared bounds cannot drift apart.
"$python" - "$root/pyproject.toml" >"$tmp/lowest.txt" <<'PY'
import re, sys, tomllib

deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
floors = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[a-z0-9,]+\])?>=([0-9.]+)", d).groups() for d in deps)
for name in ("transformers", "accelerate", "peft", "datasets"):
    print(f"{name}=={floors[name]}")
print("torch==2.13.0")
PY
if ! cmp -s "$tmp/lowest.txt" "$venv/lowest.txt" 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    pip=("$venv/bin/pip" install -q --no-compile -c "$tmp/lowest.txt")  # no .pyc for all of torch: minutes
    "${pip[@]}" torch==2.13.0
    "${pip[@]}" -e "$root[dev]"
    cp "$tmp/lowest.txt" "$venv/lowest.txt"
fi
"$venv/bin/pip" check
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
print("lowest:", ", ".join(f"{n} {version(n)}" for n in ("torch", "transformers", "accelerate", "peft", "datasets", "tokenizers", "huggingface-hub")))
PY
cd "$root"
"$venv/bin/python" -m pytest -q -n 2 --dist loadfile -p no:cacheprovider \
    tests/test_loss.py tests/test_train.py tests/test_eval.py tests/test_train_multiprocess.py tests/test_kd.py

# One-command set-up: `make test` and `make demo` create .venv on first use.
# `make demo` is the offline quickstart (recipes/quickstart.yaml: about 10 minutes on 2 CPU cores).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel keeps set-up small where no GPU is; on a GPU machine use `make TORCH=torch`.
TORCH  ?= torch==2.13.0

$(BIN)/distill: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

.PHONY: install test test-fast demo quickstart demo-validate bench clean
install: $(BIN)/distill

test: $(BIN)/distill
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Without the `slow` tests (compile, resume, static-loop decode, 2 processes): for local runs; CI runs all.
test-fast: $(BIN)/distill
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

demo: quickstart

quickstart: $(BIN)/distill
	$(BIN)/distill run recipes/quickstart.yaml

demo-validate: $(BIN)/distill
	$(BIN)/distill validate --thought pot ../shared/data/recorded/multiarith_pot_codex_zeroshot.jsonl \
		--rationale-field generated -o runs/demo/multiarith_pot.jsonl --overwrite

clean:
	rm -rf $(VENV) runs

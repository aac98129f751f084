# Two commands on a fresh machine:
#   make demo   create .venv and run the main job end to end, offline
#   make test   create .venv and run the test suite
# Re-running reuses the environment (rebuilt only when pyproject.toml or the
# constraints change).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fakedet-installed
PYTEST_ARGS ?=

.PHONY: venv test demo bench test-gpu clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints/test.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints/test.txt -e '.[dev]'
	@touch $(STAMP)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-gpu: venv
	$(BIN)/python -m pytest -m gpu $(PYTEST_ARGS)

demo: venv
	$(BIN)/python scripts/demo.py --out demo-out

bench: venv
	$(BIN)/python benchmarks/bench_headline.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache

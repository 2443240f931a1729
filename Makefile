# normbench — `make help` lists the targets. Everything runs inside .venv/ (made on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPERIMENT ?= bn_fig1
SWEEP ?= small_batch
JOBS ?= 1
ARGS ?=
RESULTS ?= results/$(EXPERIMENT)

.PHONY: help install run test test-all sweep domain-shift report tb bench data lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'
	@echo "  variables: EXPERIMENT=$(EXPERIMENT) SWEEP=$(SWEEP) JOBS=$(JOBS) ARGS='extra Hydra overrides'"
	@echo "  make sweep: SWEEP=small_batch (GN paper small-batch study -> results/small_batch, JOBS parallel"
	@echo "  processes; SWEEP=small_batch_long: the same 8x longer); SWEEP=batch_size or lr"
	@echo "  (configs/sweep/<name>.yaml): that ablation of EXPERIMENT"

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "normbench needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv/ and install normbench (editable) with its test tools

data: install  ## get the default dataset (Fashion-MNIST) unless it is already there
	@$(BIN)/normbench data --check fashion_mnist || NORMBENCH=$(BIN)/normbench scripts/get_fashion_mnist.sh

# A multirun with failed jobs still gets its report, then make fails; Ctrl-C stops without one.
run: install data  ## train the default experiment (BN paper Fig. 1) and write its report to results/
	status=0; $(BIN)/normbench train -m experiment=$(EXPERIMENT) $(ARGS) || status=$$?; \
	[ $$status -lt 128 ] || exit $$status; \
	$(BIN)/normbench report runs/$(EXPERIMENT) --out $(RESULTS) && exit $$status

test: install  ## run the test suite (CPU-only, offline; slow tests excluded)
	$(BIN)/pytest -q -m "not slow"

test-all: install  ## run every test, slow ones included
	$(BIN)/pytest -q

# JOBS > 1: that many jobs at once through Hydra's joblib launcher (configs/hydra/launcher/joblib.yaml).
sweep: install data  ## small-batch study (GN paper Fig. 1) -> results/small_batch; SWEEP=batch_size: ablation
ifneq ($(filter small_batch small_batch_long,$(SWEEP)),)
	NORMBENCH=$(BIN)/normbench EXPERIMENT=$(SWEEP) JOBS=$(JOBS) scripts/small_batch.sh $(ARGS)
else
	status=0; launcher=; [ $(JOBS) -le 1 ] || launcher=hydra/launcher=joblib; \
	NORMBENCH_JOBS=$(JOBS) $(BIN)/normbench train -m experiment=$(EXPERIMENT) +sweep=$(SWEEP) $$launcher $(ARGS) || status=$$?; \
	[ $$status -lt 128 ] || exit $$status; \
	$(BIN)/normbench report runs/$(EXPERIMENT)-$(SWEEP) && exit $$status
endif

domain-shift: install data  ## domain-shift study (AdaBN, partial, tent on common corruptions) -> results/domain_shift
	NORMBENCH=$(BIN)/normbench JOBS=$(JOBS) scripts/domain_shift.sh $(ARGS)

report: install  ## rebuild the report of the default experiment from its runs
	$(BIN)/normbench report runs/$(EXPERIMENT) --out $(RESULTS)

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

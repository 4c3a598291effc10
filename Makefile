# One line per verb. `make demo` and `make test` are the README's Quickstart: they work on a fresh
# machine with nothing installed by hand (python3 >= 3.11 with venv; root for the Debian data package).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian packages the test suite uses (data set, engines, browser...). Installed by `make test` when
# run as root; otherwise the tests that need one skip with a line saying which package to install.
# debootstrap: the base image of the container tests (deploy/airgap-build.sh); prometheus: promtool.
SYSTEM_PACKAGES := dataset-fashion-mnist debootstrap prometheus

.PHONY: install system-packages fashion-data demo test lint typecheck train serve bench reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -e '.[train,serve,dev]' && touch $@

install: $(STAMP)                  ## .venv with the train, serve and dev extras
system-packages:                   ## the Debian packages in SYSTEM_PACKAGES (needs root), or say how to get them
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null; } \
	|| echo "system packages: run 'sudo apt-get install $$missing' (the tests that need them are skipped until then)"
fashion-data: system-packages      ## Fashion-MNIST from Debian (needs root), or say how to get it
demo: install                      ## train on mnist-5k, publish to models/, then serve it
	$(BIN)/mlp-train train --config training/configs/mnist-5k.toml && $(BIN)/mlp-serve --repository models --no-control
test: install system-packages        ## the whole test suite (CI runs this)
	$(BIN)/pytest
lint: install                      ## ruff
	$(BIN)/ruff check .
typecheck: install                 ## mypy on training/ and service/
	$(BIN)/mypy
train: install                     ## train with a preset: make train CONFIG=training/configs/fashion-mnist.toml
	$(BIN)/mlp-train train --config $(or $(CONFIG),training/configs/mnist-5k.toml)
serve: install                     ## serve whatever is in models/ (model control needs MLP_API_KEY)
	$(BIN)/mlp-serve --repository models
reliability: install               ## reliability + security suite, long versions (5 min load, 10,000 fuzz cases; ~12 min)
	RELIABILITY_LONG=1 $(BIN)/pytest tests/reliability -v
bench: install                     ## speed benchmarks (print numbers; not tests)
	$(BIN)/python bench/train_speed.py && $(BIN)/python bench/serve_load.py
clean:                             ## remove the virtualenv and caches (keeps models/)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

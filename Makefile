# One line per verb. `make demo` and `make test` are the README's Quickstart: they work on a fresh
# machine with nothing installed by hand (python3 >= 3.11 with venv; root for the Debian data package).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install fashion-data demo test lint typecheck train serve bench reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -e '.[train,serve,dev]' && touch $@

install: $(STAMP)                  ## .venv with the train, serve and dev extras
fashion-data:                      ## Fashion-MNIST from Debian (needs root), or say how to get it
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null); } || echo "fashion-mnist: run 'sudo apt-get install dataset-fashion-mnist' (its tests are skipped until then)"
demo: install                      ## train on mnist-5k, publish to models/, then serve it
	$(BIN)/mlp-train train --config training/configs/mnist-5k.toml && $(BIN)/mlp-serve --repository models --no-control
test: install fashion-data         ## the whole test suite (CI runs this)
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

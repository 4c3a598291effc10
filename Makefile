# One line per verb. `make demo` and `make test` are the README's Quickstart: they work on a fresh
# machine with nothing installed by hand (python3 >= 3.11 with venv; root for the Debian data package).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian packages the test suite uses (data set, engines, browser...). Installed by `make test` when
# run as root; otherwise the tests that need one skip with a line saying which package to install.
# debootstrap: the base image of the container tests (deploy/airgap-build.sh); prometheus: promtool;
# curl, openssl: the README's examples (tests/e2e/test_readme.py); chromium: the page test
# (tests/e2e/test_page_browser.py, driven by Playwright); postgresql: a sweep study shared by two
# workers (tests/training/test_sweep_study.py).
SYSTEM_PACKAGES := dataset-fashion-mnist debootstrap prometheus curl openssl chromium postgresql

.PHONY: install system-packages fashion-data demo test lint typecheck grpc-code train serve bench reliability clean

# torch: the CPU build everywhere, at the exact version pyproject.toml pins. PyPI's Linux torch is
# the CUDA build (several GB of nvidia-* wheels); PyTorch's CPU index serves the same version as
# `2.13.0+cpu` (about 190 MB), which satisfies `torch==2.13.0`. Only torch is asked of that index
# (--no-deps, bounded retries), so where it is unreachable this step costs a second, says so and
# the next step takes torch from the usual index (or a local wheel) as before.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN   := $(shell grep -oE '"torch==[^"]+"' pyproject.toml | tr -d '"')

$(VENV)/.torch: pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip
	@echo "torch: $(TORCH_PIN), CPU build from $(TORCH_INDEX)"
	@$(BIN)/pip install --quiet --no-deps --retries 1 --timeout 20 --index-url $(TORCH_INDEX) '$(TORCH_PIN)' 2>$(VENV)/torch-index.log \
	|| echo "torch: $(TORCH_INDEX) unreachable ($(VENV)/torch-index.log); taking $(TORCH_PIN) from your default index"
	@touch $@
$(VENV)/.demo: $(VENV)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e '.[train,serve]' && touch $@
$(STAMP): $(VENV)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e '.[train,serve,dev]' && touch $@ $(VENV)/.demo

install: $(STAMP)                  ## .venv with the train, serve and dev extras (CPU torch)
system-packages:                   ## the Debian packages in SYSTEM_PACKAGES (needs root), or say how to get them
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null; } \
	|| echo "system packages: run 'sudo apt-get install $$missing' (the tests that need them are skipped until then)"
fashion-data: system-packages      ## Fashion-MNIST from Debian (needs root), or say how to get it
demo: $(VENV)/.demo                ## train on mnist-5k, publish to models/, then serve it (no dev extra)
	$(BIN)/mlp-train train --config training/configs/mnist-5k.toml && $(BIN)/mlp-serve --repository models --no-control
test: install system-packages        ## the whole test suite (CI runs this)
	$(BIN)/pytest
lint: install                      ## ruff
	$(BIN)/ruff check .
typecheck: install                 ## mypy on training/ and service/
	$(BIN)/mypy
grpc-code: install                 ## regenerate service/grpc/grpc_service_pb2.py(i) from the .proto (grpcio-tools)
	$(BIN)/python -m service.grpc.generate
train: install                     ## train with a preset: make train CONFIG=training/configs/fashion-mnist.toml
	$(BIN)/mlp-train train --config $(or $(CONFIG),training/configs/mnist-5k.toml)
serve: $(VENV)/.demo               ## serve models/ (model control on only when MLP_API_KEY is set)
	$(BIN)/mlp-serve --repository models $(if $(MLP_API_KEY),,--no-control)
reliability: install               ## reliability + security suite, long versions (5 min load, 10,000 fuzz cases; ~12 min)
	RELIABILITY_LONG=1 $(BIN)/pytest tests/reliability -v
bench: install                     ## speed benchmarks (print numbers; not tests)
	$(BIN)/python bench/train_speed.py && $(BIN)/python bench/serve_load.py
clean:                             ## remove the virtualenv and caches (keeps models/)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

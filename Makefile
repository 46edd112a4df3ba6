# Hub the Hard Way: `make book` builds the book, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The Debian release of the test VMs (13 = trixie, the book's; 12 = bookworm, still proven).
DEBIAN ?= 13

.PHONY: book test test-all setup lint clean bench test-latest

# The virtualenv, rebuilt when requirements.txt changes.
$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

## book: build the book strictly (warnings are errors), offline, and say where it is.
book: $(VENV)/.installed
	$(BIN)/jupyter-book build . --all --warningiserror --keep-going --quiet
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

## setup: Docker Engine, debootstrap, SSH and Chromium on this machine; the base images.
setup: $(VENV)/.installed
	bash scripts/setup-host.sh
	bash scripts/build-base-images.sh

## test: every stage, the repo-level tests and the book build on Debian $(DEBIAN);
## with the default (13), stages 01-02 on Debian 12 too.
test: setup
	HHW_DEBIAN=$(DEBIAN) bash scripts/run-tests.sh
	@if [ "$(DEBIAN)" = 13 ]; then HHW_DEBIAN=12 bash scripts/run-tests.sh steps/01 steps/02; fi

## test-all: every stage on Debian 13, then every stage on Debian 12.
test-all: setup
	HHW_DEBIAN=13 bash scripts/run-tests.sh
	HHW_DEBIAN=12 bash scripts/run-tests.sh steps

## bench: the benchmarks (not part of `make test`) on test VMs booted from the saved stage images
## (built first if missing): spawn, many users at once, CHP against Traefik, a hub restart, the book
## build. About 20 minutes on 2 cores; one JSON per benchmark in book/bench/, which the book reads.
bench: setup
	$(BIN)/python -m scripts.bench

## test-latest: drift (not part of `make test`): every stage's tests on stage images built with the newest
## releases of the Python and npm packages instead of the pins (images tagged latest-, pinned ones untouched);
## prints a table of what broke and writes book/drift/latest.json, which the book's drift page reads.
## STAGES="01 02" runs those stages only (a later run of the same day goes on with the same images).
test-latest: setup
	$(BIN)/python -m scripts.latest --debian $(DEBIAN) $(if $(STAGES),--stages $(STAGES))

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf _build .cache/screenshots .cache/logs

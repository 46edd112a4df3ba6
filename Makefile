# Hub the Hard Way: `make book` builds the book, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: book test setup lint clean

# The virtualenv, rebuilt when requirements.txt changes.
$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

## book: build the book strictly (warnings are errors), offline, and say where it is.
book: $(VENV)/.installed
	$(BIN)/jupyter-book build . --all --warningiserror --keep-going --quiet
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

## setup: Docker Engine, debootstrap and Chromium on this machine; the base images.
setup: $(VENV)/.installed
	bash scripts/setup-host.sh
	bash scripts/build-base-images.sh

## test: set up, then run every test: all stages, the repo-level tests, the book build.
test: setup
	bash scripts/run-tests.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf _build .cache/screenshots .cache/logs

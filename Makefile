# Two commands on a fresh machine: `make book` builds the HTML book,
# `make test` runs the tests. Both set up what they need first.
SHELL := /bin/bash
VENV ?= .venv
export VENV

.PHONY: setup book test lab clean

setup:
	@tools/setup.sh book

book: setup
	@tools/build-book.sh

test:
	@tools/setup.sh test
	@tools/build-book.sh
	@echo "==> running the tests (pytest)"
	@$(VENV)/bin/pytest

lab: setup
	@echo "==> opening JupyterLab on the chapters (a double-click opens a chapter as a notebook)"
	@$(VENV)/bin/jupyter lab --notebook-dir=. $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean:
	rm -rf _build

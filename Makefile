# Two commands on a fresh machine: `make book` builds the HTML book,
# `make test` runs the tests (`make test-all` adds the long suites).
# All set up what they need first.
SHELL := /bin/bash
VENV ?= .venv
export VENV

.PHONY: setup book test test-all test-hwvirt lab clean

setup:
	@tools/setup.sh book

book: setup
	@tools/build-book.sh

# make test: everything but the tests marked `full` (budget: 180 s on 2 cores).
test:
	@tools/setup.sh test
	@tools/build-book.sh
	@tools/run-tests.sh quick $(PYTEST_ARGS)

# make test-all: make test, then the long suites marked `full` (CI runs this).
test-all: test
	@tools/run-tests.sh full $(PYTEST_ARGS)

# make test-hwvirt: the VMM's KVM live tests against kvm_amd inside a QEMU TCG guest (emulated AMD-V)
# and against kvm_intel inside a Bochs guest (emulated VT-x), side by side on two cores (about 10 min;
# Bochs is the long one); make test-all runs the same tests among the suites marked `full`.
test-hwvirt:
	@tools/setup.sh test
	@$(VENV)/bin/python -m lab kit build --profile hwvirt-amd
	@$(VENV)/bin/python -m lab kit build --profile hwvirt-intel
	@$(VENV)/bin/pytest -n 2 --dist loadfile -m full tests/test_hwvirt.py tests/test_bochs.py $(PYTEST_ARGS)

lab: setup
	@echo "==> opening JupyterLab on the chapters (a double-click opens a chapter as a notebook)"
	@$(VENV)/bin/jupyter lab --notebook-dir=. $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean:
	rm -rf _build

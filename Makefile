# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

# CPU torch first, from constraints-cpu.txt: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints-cpu.txt torch
	$(PIP) install -c constraints-cpu.txt -e '.[all,dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/edgeopt demo

# Fast default run (real tiny models + one MiniLM integration test); `make test-all` adds slow ones.
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-only $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .benchmarks

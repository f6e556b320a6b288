# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench bench-gate clean

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

# CI regression gate (copy into your pipeline): exit 1 when an artifact's per-call CPU time is slower
# than BASELINE by more than MAX_REGRESSION % with 95 % confidence. First run: `make bench-gate
# BASELINE=` writes bench.json; commit it as the baseline. ARTIFACT: a file, export folder or bundle.
ARTIFACT       ?= demo-out
BASELINE       ?= bench-baseline.json
MAX_REGRESSION ?= 10
bench-gate: $(STAMP)
	$(VENV)/bin/edgeopt bench $(ARTIFACT) --json bench.json --html bench-report \
		$(if $(BASELINE),--baseline $(BASELINE) --max-regression $(MAX_REGRESSION))

clean:
	rm -rf $(VENV) demo-out .pytest_cache .benchmarks

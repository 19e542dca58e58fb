# Every target bootstraps .venv when it is missing (or when pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIXCAP := $(VENV)/bin/pixcap
STAMP := $(VENV)/.installed
DEMO := data/demo

.PHONY: run test test-fast bench bench-train demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pixcap.demo.sa1b $(DEMO)

# The embedded default: the bundled SA-1B-style demo collection, tiny offline models, CPU, local Ray.
run: demo
	$(PIXCAP) run jobs/local.yaml

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_cluster.py
	$(PY) bench/bench_ledger.py

bench-train: $(STAMP)
	$(PY) bench/bench_train.py

clean:
	rm -rf out $(DEMO)

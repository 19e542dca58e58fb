# Every target bootstraps .venv when it is missing (or when pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIXCAP := $(VENV)/bin/pixcap
STAMP := $(VENV)/.installed
DEMO := data/demo

.PHONY: run test test-fast test-unit chromium bench bench-train demo clean

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

# Debian's chromium, which the report's browser tests open the report in (tests/analysis/browser.py):
# installed here when it is missing, with sudo when not root, so that `make test` on a fresh machine
# passes by itself. The tests fail rather than skip without it: a skipped browser test would pass
# without a browser.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "make: installing Debian's chromium for the report's browser tests"; \
	  log=$$(mktemp); \
	  { $$sudo apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >$$log 2>&1 \
	    || { cat $$log; rm -f $$log; exit 1; }; rm -f $$log; }

# The markers below are set in tests/conftest.py from the fixtures a test uses, not by hand:
# `ray` (the session's Ray, or a Ray a `pixcap run` subprocess starts), `s3` (the S3 server).
# `slow` marks the long end-to-end, fault and memory tests. pytest prints the 20 slowest tests.

# Every test: the slow end-to-end, fault, cluster and memory tests too (the 20 slowest are listed at the end).
test: $(STAMP) chromium
	$(PY) -m pytest

# Every test but the slow ones: the unit tests, and the quick tests on the session's one Ray.
test-fast: $(STAMP) chromium
	$(PY) -m pytest -m "not slow"

# The tests that need neither Ray nor the S3 server (so no `pixcap run` getting as far as Ray), and
# are not slow (the tiny trainer's overfit, distributed and SIGTERM runs take minutes without Ray):
# the quick loop while editing.
test-unit: $(STAMP) chromium
	$(PY) -m pytest -m "not ray and not s3 and not slow"

# Each benchmark runs as a module (`python -m bench.bench_cluster`), its servers on free loopback
# ports; BENCH_TIMEOUT seconds each at most, so a bench that hangs ends `make bench` with an error.
BENCH_TIMEOUT ?= 1800
BENCH := timeout --kill-after=30 $(BENCH_TIMEOUT) $(PY) -m
bench: $(STAMP)
	$(BENCH) bench.bench_stages
	$(BENCH) bench.bench_decode
	$(BENCH) bench.bench_pipeline
	$(BENCH) bench.bench_cluster
	$(BENCH) bench.bench_ledger

bench-train: $(STAMP)
	$(BENCH) bench.bench_train

clean:
	rm -rf out $(DEMO)

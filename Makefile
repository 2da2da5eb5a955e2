# churnlens: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv and install churnlens into it when needed (Python >= 3.11 only).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.churnlens-installed
DEMO_DIR ?= demo-output

.PHONY: install chromium test test-fast demo lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "churnlens needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	@# uv resolves and downloads in parallel: ~1 min instead of ~8 with pip on this
	@# machine; pip stays the fallback when uv cannot be installed.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv || true
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  $(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[dev,spark,datasets]'; \
	else \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,spark,datasets]'; \
	fi
	touch $@

install: $(STAMP)

## make chromium: the browser for the tests marked `browser` (Debian's package, no browser
## download), installed when missing and run as root; otherwise those tests skip (with CI
## set they fail instead). Fonts so that screenshots show text.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq || true; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-dejavu-core >/dev/null \
	    || echo "could not install chromium: the browser tests will skip (fail with CI set)"; \
	else \
	  echo "no chromium, and not root with apt-get: the browser tests will skip (fail with CI set)"; \
	fi

## make test: lint, check the layers and types, run the whole test suite (unit, data, model,
## Spark, notebooks, real browser, doctests)
test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	@# two workers, one test file each (module fixtures stay per file): 12.8 min instead
	@# of ~19 on 2 cores (2,367 tests, measured 2026-12-05)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## make test-fast: skip the slow, Spark, notebook and browser tests while editing
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not spark and not notebooks and not browser"

## make demo: the main job end to end on embedded defaults (synthetic data, DuckDB, sqlite MLflow)
demo: $(STAMP)
	$(BIN)/churnlens demo --out $(DEMO_DIR) --customers 20000 --seed 42

## make lint: ruff, the layer contract (import-linter) and the type checker (mypy); see
## docs/architecture.md
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache

# The one command index. `make run` and `make test` install what they need themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements-nodeps.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test suite test-fast lint format bench eval clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

## Start web, one worker per queue and the scheduler (embedded Redis if none answers).
run: install
	$(PY) -m backend.embedded_redis -- $(PY) -m backend.devrun

## Lint, type-check, check the import contracts and run the whole suite, chaos tests included.
test: lint suite

## The whole suite without the linters (DATABASE_URL=postgres://... to run it on PostgreSQL).
suite: install
	$(PY) -m backend.embedded_redis -- $(PY) -m pytest $(PYTEST_ARGS)

## The suite without the slow chaos tests.
test-fast: install
	$(PY) -m backend.embedded_redis -- $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Benchmarks, not tests: one table of ratios to baselines measured in the same run, saved in
## bench/results/ (BENCH_ARGS=--quick for a short run, --only NAME for one scenario).
bench: install
	$(PY) -m backend.embedded_redis -- $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var/test.sqlite3* var/test-media

## Quality on public data (SciFact): search nDCG@10/recall@100 (EVAL_ARGS=--limit 300 for a smoke run).
## The first run ingests the corpus (a few minutes); reruns reuse it from var/eval/.
eval: install
	$(PY) -m bench.eval $(EVAL_ARGS)

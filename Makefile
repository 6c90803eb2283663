# Development tasks. .ci/run and the workflow's lint job run these same targets.
#
#   make install     the project with its test and lint extras, editable
#   make format      rewrite the code: ruff's safe fixes, then ruff format
#   make lint        ruff check, ruff format --check, flake8 (changes nothing)
#   make typecheck   mypy --strict over newsbot/
#   make test        the test suite (PYTEST_ARGS='-m "not container"', '-x tests/test_cli.py', ...)
#   make coverage    the suite under coverage, bot subprocesses included; prints the report
#
# PYTHON is the project's virtualenv when there is one, else the python3 on PATH (CI's
# setup-python); `make test PYTHON=...` chooses another.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
PYTEST_ARGS ?=

.PHONY: install format fix lint typecheck test coverage

install:
	$(PYTHON) -m pip install -e '.[test,lint]'

# ruff check --fix first: sorted imports and the 3.11 spellings are then formatted once.
format:
	$(PYTHON) -m ruff check --fix --exit-zero --quiet .
	$(PYTHON) -m ruff format .

fix: format

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m flake8

typecheck:
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# pyproject's [tool.coverage.run] patch = ["subprocess"] makes every `python -m newsbot`
# the tests start write its own data file; `combine` merges them. The cluster/ line is
# the code that only runs across processes. No threshold fails the run (yet). pytest's
# summary line is repeated last, so the run still ends with how the tests went.
coverage:
	$(PYTHON) -m coverage erase
	out=$$(mktemp -d); \
	{ $(PYTHON) -m coverage run -m pytest $(PYTEST_ARGS); echo $$? >"$$out/status"; } \
	    2>&1 | tee "$$out/log"; \
	$(PYTHON) -m coverage combine --quiet; \
	$(PYTHON) -m coverage report; \
	echo "cluster/ branch coverage: $$($(PYTHON) -m coverage report \
	    --include='newsbot/cluster/*' --format=total)% (statements and branches)"; \
	tail -n 1 "$$out/log"; \
	status=$$(cat "$$out/status"); rm -rf "$$out"; exit $$status

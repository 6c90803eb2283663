# Development tasks. .ci/run and the workflow's lint job run these same targets.
#
#   make install     the project with its test and lint extras, editable
#   make format      rewrite the code: ruff's safe fixes, then ruff format
#   make lint        ruff check, ruff format --check, flake8 (changes nothing)
#   make typecheck   mypy --strict over newsbot/
#   make test        the test suite, in parallel then the timing tests alone
#                    (PYTEST_ARGS='-m "not container"', '-x tests/test_cli.py', ...; WORKERS=8)
#   make coverage    the suite under coverage, bot subprocesses included; prints the report
#
# PYTHON is the project's virtualenv when there is one, else the python3 on PATH (CI's
# setup-python); `make test PYTHON=...` chooses another.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
PYTEST_ARGS ?=
WORKERS ?= 8
# The slowest tests of each phase are listed at its end: where the run's time goes.
DURATIONS = --durations=12 --durations-min=10
# --no-loadscope-reorder: modules go out in collection order, which tests/conftest.py
# starts with the longest (xdist would start with those of the most tests).
PARALLEL = -n $(WORKERS) --dist loadfile --no-loadscope-reorder --alone=skip $(DURATIONS)

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

# Two phases: most tests on $(WORKERS) workers at once (they mostly wait on sockets and
# timers, so more workers than cores pays), a module's tests on one worker (its fixtures,
# a Docker image or a control plane, are built once); then those judged on timing
# (marked alone), with the machine to themselves. Exit status 5: no test selected.
test:
	$(PYTHON) -m pytest $(PARALLEL) $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PYTHON) -m pytest --alone=only $(DURATIONS) $(PYTEST_ARGS) || [ $$? -eq 5 ]

# pyproject's [tool.coverage.run] patch = ["subprocess"] makes every `python -m newsbot`
# the tests start write its own data file; `combine` merges them. The cluster/ line is
# the code that only runs across processes. No threshold fails the run (yet). pytest's
# summary line is repeated last, so the run still ends with how the tests went.
coverage:
	$(PYTHON) -m coverage erase
	out=$$(mktemp -d); \
	{ $(PYTHON) -m coverage run -m pytest $(PARALLEL) $(PYTEST_ARGS); echo $$? >"$$out/parallel"; } \
	    2>&1 | tee "$$out/parallel.log"; \
	{ $(PYTHON) -m coverage run -m pytest --alone=only $(DURATIONS) $(PYTEST_ARGS); echo $$? >"$$out/alone"; } \
	    2>&1 | tee "$$out/alone.log"; \
	$(PYTHON) -m coverage combine --quiet; \
	$(PYTHON) -m coverage report; \
	echo "cluster/ branch coverage: $$($(PYTHON) -m coverage report \
	    --include='newsbot/cluster/*' --format=total)% (statements and branches)"; \
	echo "in parallel: $$(tail -n 1 "$$out/parallel.log")"; \
	echo "alone:       $$(tail -n 1 "$$out/alone.log")"; \
	status=0; for phase in parallel alone; do \
	    code=$$(cat "$$out/$$phase"); [ "$$code" -eq 0 ] || [ "$$code" -eq 5 ] || status=1; \
	done; rm -rf "$$out"; exit $$status

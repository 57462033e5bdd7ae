# The two commands: `make run` opens the app, `make test` runs the whole suite.
# Both set everything up first (venv, the right vLLM build, the embedded model).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test setup bench lint clean

setup:
	@VENV=$(VENV) bash scripts/setup.sh

run: setup
	$(VENV)/bin/tokentop

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

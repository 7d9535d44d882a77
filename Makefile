# nbviz: `make demo` and `make test` install what is missing, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nbviz-installed
DEMO_PORT ?= 8888

.PHONY: demo test bench docs lint deps system-deps python-deps clean

deps: system-deps python-deps

system-deps:
	@scripts/install-system-deps

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "nbviz: installing Python packages into $(VENV)"
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import nbviz, jupyterlab, jupyter_server_proxy, playwright" 
	@touch $@

lint: python-deps
	$(BIN)/ruff check nbviz tests benchmarks
	$(BIN)/ruff format --check nbviz tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	@# the front end's and the desktop pages' scripts: real .js files, syntax-checked
	@if command -v node >/dev/null; then \
	  for f in nbviz/*/web/*.js; do node --check $$f || exit 1; done; \
	  node --check --input-type=module < js/frame.js || exit 1; \
	  echo "nbviz: JavaScript syntax checked (node --check)"; \
	else echo "nbviz: node not found: JavaScript syntax not checked"; fi

test: deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: python-deps
	$(BIN)/python -m sphinx -W -b html docs docs/_build/html
	@echo "nbviz: docs in docs/_build/html/index.html"

bench: deps
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/transports.py
	$(BIN)/python benchmarks/slurm.py
	$(BIN)/python benchmarks/paraview.py
	$(BIN)/python benchmarks/paraview_interaction.py
	$(BIN)/python benchmarks/paraview_mpi.py
	$(BIN)/python benchmarks/paraview_follow.py
	$(BIN)/python benchmarks/desktop.py
	$(BIN)/python benchmarks/remote.py

demo: deps
	@echo "nbviz: starting JupyterLab on notebooks/ (Ctrl-C to stop); open the URL printed below"
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(DEMO_PORT) \
	  --ServerApp.root_dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache test-artifacts

# Set-up and the two entry points: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,plots]'
	-$(VENV)/bin/lstmlab build
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lstmlab demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check lstmlab tests benchmarks

bench: $(STAMP)
	$(VENV)/bin/lstmlab bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

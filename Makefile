# The README's two commands:
#   make demo   the main job on the default dataset
#   make test   the test suite
# Both create .venv and install hashsdk into it (editable, with every extra) when missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hashsdk-installed
PYTEST_ARGS ?= -q
DATASET ?= fashion-mnist
BITS ?= 32

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml setup.py hashsdk/_kernel.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,export,bench,dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) scripts/demo.py --dataset $(DATASET) --bits $(BITS)

bench: $(STAMP)
	$(PY) benchmarks/search.py
	$(PY) benchmarks/metrics_speed.py
	$(PY) benchmarks/encode.py
	$(PY) scripts/readme_tables.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf build *.egg-info hashsdk/*.so .pytest_cache

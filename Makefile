# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Extras installed into the venv; .ci/run adds `twins` (the CPU torch wheel).
EXTRAS ?= test
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
WORKDIR ?= runs/quickstart
# pytest-xdist workers; whole files per worker (module fixtures train once). Compiles are
# mostly single-threaded, so two workers keep two cores busy; TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# the MTCNN parity test's reference; --no-deps: its metadata pins torch<2.3 and numpy<2
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m agr_jax.train --config configs/quickstart.py --workdir $(WORKDIR)
	$(PY) -m agr_jax.evaluate --workdir $(WORKDIR) --split test

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(WORKDIR)

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

.PHONY: demo test lint venv clean browser ort-web

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# the MTCNN converter test reads its .pt files (with torch), and benchmarks/mtcnn_reference.py
	# rewrites the parity test's reference; --no-deps: its metadata pins torch<2.3 and numpy<2
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	# ONNX export: jax2onnx without its orbax-checkpoint<0.11.37 pin (see pyproject's `export`).
	$(PY) -m pip install -q --no-deps 'jax2onnx==0.17.1'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m agr_jax.train --config configs/quickstart.py --workdir $(WORKDIR)
	$(PY) -m agr_jax.evaluate --workdir $(WORKDIR) --split test

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

# The browser test of the page (tests/test_serve_browser.py) needs Chromium: Debian's package
# as root, else say how (or point AGR_CHROMIUM at a Chrome/Chromium binary).
browser: $(STAMP)
	@command -v chromium >/dev/null || [ -n "$$AGR_CHROMIUM" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "Chromium missing: sudo apt-get install -y chromium, or AGR_CHROMIUM=/path/to/chrome"; \
	    exit 1; fi; }
	$(PY) -m pytest -q -n 0 tests/test_serve_browser.py

# onnxruntime-web (npm), its WebAssembly-only build, for the page's in-browser mode: `python -m agr_jax.serve --ort_web
# runs/ort-web/dist`. Only the three files the page loads are kept (about 15 MB).
ORT_WEB_VERSION ?= 1.31.1
ORT_WEB_FILES := ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
ort-web:
	mkdir -p runs/ort-web && cd runs/ort-web && npm pack -q onnxruntime-web@$(ORT_WEB_VERSION) \
	  && tar xzf onnxruntime-web-$(ORT_WEB_VERSION).tgz $(addprefix package/dist/,$(ORT_WEB_FILES)) \
	  && rm -rf dist && mv package/dist dist && rm -rf package onnxruntime-web-*.tgz

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(WORKDIR)

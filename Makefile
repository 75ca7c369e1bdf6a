# make setup  - virtual environment with the CPU build of torch and the pinned stack
# make demo   - the real pipeline on the offline sample with the tiny model (CPU, minutes)
# make test   - the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test
setup: $(VENV)/.installed

# torch first, from its CPU build: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: requirements.txt constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements.txt
	touch $@

demo: setup
	$(PY) -m demo.run

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

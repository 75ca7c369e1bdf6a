# make setup  - .venv with torch for this machine and the locked stack the pipeline runs with
# make demo   - the real pipeline on the offline sample with the tiny model (CPU, minutes)
# make test   - the test suite but for its slow tests: adds the test tools and Chromium for the plot test
# make test-all - the whole suite, the slow tests too (what CI runs)
# make lint   - ruff (CI runs it too)
# make lock   - resolve requirements/*.lock again (needs uv and PyPI)
# make gpu-wheels - the wheels a GPU box without a package index needs for the rehearsal (.whl/)
#
# Which torch: the CUDA build where `nvidia-smi` sees a GPU, else the CPU build. Force one with
# `make setup TORCH=cpu` or `make setup TORCH=cuda`; another CUDA version's index with e.g.
# `TORCH_INDEX=https://download.pytorch.org/whl/cu126`. Switching rebuilds only torch.
PYTHON ?= python3
# Python 3.11 or newer (tomllib): said in one line, before anything runs.
PYTHON_OK := $(shell $(PYTHON) -c 'import sys; print("ok" if sys.version_info >= (3, 11) else "%d.%d" % sys.version_info[:2])' 2>/dev/null)
$(if $(filter ok,$(PYTHON_OK)),,$(error Python 3.11 or newer is needed; $(PYTHON) is $(or $(PYTHON_OK),not found): \
	make setup PYTHON=python3.11))
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# The whole resolved stack, per torch build, in requirements/ (written by `make lock`): <build>.lock
# is what the pipeline runs with (the runtime dependencies and the `review` extra),
# <build>-test.lock adds the `test` extra. torch's version is read from the CPU lock.
TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' requirements/cpu.lock)
TORCH ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
LOCK := requirements/$(TORCH).lock
TEST_LOCK := requirements/$(TORCH)-test.lock
# PyPI's Linux torch is the CUDA build (several GB of CUDA libraries); the CPU build has its own index.
TORCH_INDEX ?= $(if $(filter cpu,$(TORCH)),https://download.pytorch.org/whl/cpu,)
TORCH_STAMP := $(VENV)/.torch-$(TORCH)-$(TORCH_VERSION)
# A torch from an index named on the command line (another CUDA version) brings the CUDA libraries
# it was built with: the lock's torch and what only the CUDA lock has (triton, nvidia-*, cuda-*)
# are left to it.
CUSTOM_TORCH := $(filter command environment,$(origin TORCH_INDEX))
locked = $(if $(CUSTOM_TORCH),awk -F== 'NR == FNR {cpu[$$1]; next} $$1 != "torch" && $$1 in cpu' \
	requirements/cpu-test.lock $(1),cat $(1))

.PHONY: setup setup-test browser demo test test-all lint lock gpu-wheels
setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test browser

# The right torch first, without its dependencies (the lock pins them): once it is installed,
# nothing later can pull another build. A torch wheel this machine already has (pip's find-links,
# e.g. a wheelhouse on disk) is taken without asking an index: no download, and no retries against
# an index the machine cannot reach (pip spends ~8 s per package on one whose name does not resolve).
$(TORCH_STAMP):
	@case "$(TORCH)" in cpu|cuda) ;; *) echo "error: TORCH=$(TORCH): use TORCH=cpu or TORCH=cuda" >&2; exit 2;; esac
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.torch-* $(VENV)/.installed $(VENV)/.installed-test
	@if $(PY) -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)' or (torch.version.cuda is None) != ('$(TORCH)' == 'cpu'))" 2>/dev/null; then \
		echo "torch $(TORCH_VERSION) ($(TORCH)) already installed"; \
	else \
		$(PIP) uninstall -q -y torch 2>/dev/null; \
		if [ "$(TORCH)" = cpu ] && $(PIP) install -q --no-index --no-deps torch==$(TORCH_VERSION) 2>/dev/null; then \
			echo "torch $(TORCH_VERSION): a wheel on this machine's disk"; \
		else \
			echo "torch $(TORCH_VERSION) ($(TORCH)) from $(or $(TORCH_INDEX),PyPI)"; \
			$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(if $(CUSTOM_TORCH),,--no-deps) \
				torch==$(TORCH_VERSION); \
		fi; \
	fi
	touch $@

# The locked stack (torch's dependencies with it), then a check that torch is the build asked for.
# The project itself is not installed: the stages run as `python -m stages.x` from the checkout,
# and DVC's experiment copies must import their own copy of the code.
# pynvml is the deprecated distribution dvclive < 3.49.1 required: a venv made before keeps it, and
# its .pth prints a FutureWarning on every import of the pynvml module (nvidia-ml-py's), which torch
# and dvclive make in every stage.
$(VENV)/.installed: $(LOCK) $(TORCH_STAMP)
	$(call locked,$(LOCK)) > $(VENV)/requirements.txt
	$(PIP) install -q -r $(VENV)/requirements.txt
	if $(PIP) show -q pynvml 2>/dev/null; then $(PIP) uninstall -q -y pynvml; fi
	$(PY) -W ignore -c "import sys, torch; cuda = torch.version.cuda; print('torch', torch.__version__, 'CUDA', cuda); \
		sys.exit(f'error: TORCH=$(TORCH) but this torch is the {\"CUDA\" if cuda else \"CPU\"} build') if (cuda is None) != ('$(TORCH)' == 'cpu') else None"
	@# A CUDA build the driver is too old for sees no GPU, and the stages would refuse to run: say so now.
	@if [ "$(TORCH)" = cuda ]; then $(PY) -m stages.devices; fi
	touch $@

# The test tools on top: pytest, ruff, actionlint, pillow, markdown-it-py (the `test` extra).
$(VENV)/.installed-test: $(TEST_LOCK) $(VENV)/.installed
	$(call locked,$(TEST_LOCK)) > $(VENV)/requirements-test.txt
	$(PIP) install -q -r $(VENV)/requirements-test.txt
	touch $@

# Debian's Chromium draws the `dvc plots` page in tests/test_e2e.py. Installed where the machine
# allows it (root with apt-get); elsewhere that one test skips and says why (never under CI=true).
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the plot test (apt-get, a few minutes)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "warning: apt-get could not install chromium: the plot test will skip"; \
	else \
		echo "note: no chromium and no root apt-get: the plot test will skip (apt-get install chromium runs it)"; \
	fi

demo: setup
	$(PY) -m demo.run

test: setup-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

test-all: setup-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: setup-test
	$(PY) -m ruff check .

# The locks, resolved again for Linux x86-64 and Python 3.11 (uv: `pip install uv`). Versions already
# locked are kept where pyproject.toml still allows them: `make lock UPGRADE=--upgrade` takes the
# newest, `UPGRADE="--upgrade-package transformers"` one package. The CPU build's torch comes from
# PyTorch's CPU index (LOCK_CPU_TORCH; e.g. `--find-links DIR` for a wheel on disk); the CUDA locks
# keep every version of the CPU test lock but torch's build and its CUDA libraries.
UV ?= uv
UPGRADE ?=
LOCK_CPU_TORCH ?= --torch-backend cpu
COMPILE = $(UV) pip compile pyproject.toml --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--no-annotate --custom-compile-command "make lock" $(UPGRADE)
lock:
	@command -v $(UV) >/dev/null || { echo "error: make lock needs uv (pip install uv, or UV=/path/to/uv)" >&2; exit 2; }
	$(COMPILE) --all-extras $(LOCK_CPU_TORCH) -o requirements/cpu-test.lock
	$(COMPILE) --extra review $(LOCK_CPU_TORCH) -c requirements/cpu-test.lock -o requirements/cpu.lock
	sed -n 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/p; /^torch==/d; /==/p' requirements/cpu-test.lock > requirements/.cuda-pins.txt
	$(COMPILE) --all-extras -c requirements/.cuda-pins.txt -o requirements/cuda-test.lock
	$(COMPILE) --extra review -c requirements/cuda-test.lock -o requirements/cuda.lock
	rm requirements/.cuda-pins.txt

# Run here (needs PyPI); carries to the GPU box as .whl/ (see benchmarks/README.md).
gpu-wheels: setup
	$(PY) -m benchmarks.wheels

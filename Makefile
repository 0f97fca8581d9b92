# Two entry points: `make demo` (the main job) and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint gpu-check clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py

lint: $(STAMP)
	$(BIN)/python -m flake8

clean:
	rm -rf $(VENV) runs

# Two entry points: `make demo` (the main job) and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test test-fast test-timm test-min lint gpu-check precision-bench app-screenshots clean

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

# the inner loop: everything but the slow and subprocess tests (make test, what CI runs, is the whole suite)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not subprocess"

# timm's own tests/test_models.py (from the installed timm's source distribution) on the HarDNet models
test-timm: $(STAMP)
	$(BIN)/python tools/timm_tests.py $(TIMM_TEST_ARGS)

# the lowest versions setup.cfg allows, on the model tests (torch/torchvision: only the pinned pair is at hand)
MIN_VENV := .venv-min
MIN_PINS := timm==1.0.30 numpy==1.26.4 pillow==10.1.0
test-min:
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python -m pip install -q $(TORCH_PINS)
	$(MIN_VENV)/bin/python -m pip install -q -e . pytest $(MIN_PINS)
	$(MIN_VENV)/bin/python -m pytest -q tests/test_models.py tests/test_interop.py tests/test_fchardnet_and_dilation.py

# the precision measurements of docs/deployment.md, on a CPU with AVX512_BF16 or AMX (refused elsewhere)
precision-bench: $(STAMP)
	bash benchmarks/cpu/precision_targets.sh

# docs/images/app_*.png, taken by the browser test (headless chromium: apt-get install chromium chromium-driver)
app-screenshots: $(STAMP)
	HARDNET_REQUIRE_BROWSER=1 HARDNET_APP_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/test_app_browser.py

gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py

lint: $(STAMP)
	$(BIN)/python -m flake8
	$(BIN)/python -m isort --check-only --diff hardnet_backbones tools tests benchmarks hubconf.py
	$(BIN)/python -m yamllint --strict configs .pre-commit-config.yaml .yamllint

clean:
	rm -rf $(VENV) $(MIN_VENV) runs .cache

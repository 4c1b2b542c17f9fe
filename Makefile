# The two commands a newcomer needs (see README):
#   make demo   set up, generate sample data if missing, train the default model, open the app
#   make test   set up (incl. Debian chromium for the browser test) and run the whole test suite
# Set-up is shared: a venv in .venv, torch installed FIRST (CPU build 2.13.0 by default; a user with
# a GPU installs their CUDA torch into .venv first, or sets TORCH_SPEC), then the project.
VENV       ?= .venv
PY         := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP      := $(VENV)/.sleuth-installed

.PHONY: demo test setup browser bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sleuth demo

# Debian's chromium for the real-browser test (never `playwright install`: it downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

test: $(STAMP) browser
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/timeline.py
	$(PY) bench/links.py
	$(PY) bench/scoring.py
	$(PY) bench/explain.py
	$(PY) bench/quality.py

clean:
	rm -rf .sleuth .pytest_cache test-artifacts

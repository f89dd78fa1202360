# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[testing]"
	touch $(STAMP)

demo: setup
	$(BIN)/smlm-diffusion demo --out demo_output

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	env -u QT_QPA_PLATFORM $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_output dist build

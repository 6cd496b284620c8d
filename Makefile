# Two entry points (README "Quick start"): `make demo` and `make test`. Each creates the venv it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rspose-installed

.PHONY: venv demo test compare lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rspose fit --config configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest tests

compare: $(STAMP)
	$(BIN)/rspose compare --out outputs/compare

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/losses.py
	$(BIN)/python benchmarks/metric.py
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) outputs lightning_logs .pytest_cache

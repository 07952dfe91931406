# Every target sets itself up: a fresh clone needs only python3 (3.10+) and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test oracle stubs bench bench-grading demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## test: run the whole test suite (oracle tests skip unless `make oracle` ran)
test: $(STAMP)
	$(BIN)/python -m pytest

## oracle: install PyTorch (CPU) as the independent oracle for the reference
oracle: $(STAMP)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'

## stubs: regenerate assignment/normlab/layers.py from the reference
stubs: $(STAMP)
	$(BIN)/normgrade stubs

## bench: reference vs PyTorch CPU, ratios written to benchmarks/RESULTS.md
bench: oracle
	$(BIN)/python benchmarks/bench_layers.py --write benchmarks/RESULTS.md

## bench-grading: the cost of grading one submission, beside a bare numpy start and plain nbgrader
bench-grading: $(STAMP)
	$(BIN)/python benchmarks/bench_grading.py --write benchmarks/GRADING.md

clean:
	rm -rf $(VENV) demo

## demo: build the course, autograde three sample submissions, write feedback and CSV (in ./demo)
demo: $(STAMP)
	$(BIN)/normgrade demo --dir demo

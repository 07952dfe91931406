# Every target sets itself up: a fresh clone needs only python3 (3.10+) and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# pytest-xdist workers for the suite (auto: one per core); tests that share a module's course run on one.
JOBS   ?= auto
PYTEST := $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup

# The students' languages: GNU gettext catalogs (Babel), compiled at install (normgrade.language).
LOCALE   := assignment/normlab/locale
CATALOGS := $(wildcard $(LOCALE)/*/LC_MESSAGES/normlab.po)
COMPILED := $(CATALOGS:.po=.mo)

.PHONY: test test-fast oracle stubs bench bench-grading demo clean catalogs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(LOCALE)/%/LC_MESSAGES/normlab.mo: $(LOCALE)/%/LC_MESSAGES/normlab.po $(STAMP)
	$(BIN)/pybabel compile --statistics -l $* -i $< -o $@

## catalogs: after an English text changed: extract every message (babel.cfg), update each language's catalog
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --project normlab --no-wrap --sort-by-file -o $(VENV)/normlab.pot .
	$(BIN)/pybabel update -i $(VENV)/normlab.pot -d $(LOCALE) -D normlab --no-wrap --ignore-obsolete

## test: run the whole test suite on every core (oracle tests skip unless `make oracle` ran)
test: $(STAMP) $(COMPILED)
	$(PYTEST)

## test-fast: the inner loop: every test not marked slow (no nbgrader run, notebook, PostgreSQL, browser,
## Unix users or Gradescope container)
test-fast: $(STAMP) $(COMPILED)
	$(PYTEST) -m "not slow"

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
demo: $(STAMP) $(COMPILED)
	$(BIN)/normgrade demo --dir demo $(if $(LANGUAGE),--language $(LANGUAGE))

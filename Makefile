# digitlab: every set-up step a new user or CI needs, in one place.
#   make demo   create .venv, install digitlab (pinned), fetch MNIST, run the main job
#   make test   create the same environment and run the fast test suite in two worker processes
#               (pytest-xdist; about 4.5 minutes on 2 cores)
#   make test-slow  the minutes-long accuracy checks (the best CNN on photos and numbers),
#               and every fuzzing test with its long profile
#   make lint   ruff check + ruff format --check + import-linter (the layers)
#   make bench  run the benchmarks and write docs/benchmarks.md
#   make notebooks  run the tutorial notebooks in full and write docs/notebooks/*.ipynb
#   make docs   build the documentation site (MkDocs, strict) into site/

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= torch,export,serve,bench,notebooks,docs,sweep,dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv demo test test-slow lint format bench notebooks docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -c constraints.txt pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: venv
	$(BIN)/digitlab data fetch mnist
	$(BIN)/digitlab run --overwrite

# two workers, one thread each (tests/conftest.py): the suite is mostly one thread at a time
test: venv
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m slow --timeout 1200 $(PYTEST_ARGS)
	HYPOTHESIS_PROFILE=slow DIGITLAB_FUZZ_EXAMPLES=1000 \
		$(BIN)/python -m pytest -k fuzz --timeout 1800 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m benchmarks

notebooks: venv
	$(BIN)/python notebooks/run.py --out docs/notebooks

# --strict: any warning (a broken link or anchor, an API object that cannot be found) fails.
# NO_MKDOCS_2_WARNING only silences mkdocs-material's end-of-life banner.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build site .pytest_cache .ruff_cache src/*.egg-info

# digitlab: every set-up step a new user or CI needs, in one place.
#   make demo   create .venv, install digitlab (pinned), fetch MNIST, run the main job
#   make test   create the same environment and run the whole test suite
#   make lint   ruff check + ruff format --check
#   make bench  run the benchmarks and write docs/benchmarks.md
#   make notebooks  run the tutorial notebooks in full and write docs/notebooks/*.ipynb

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= torch,export,serve,bench,notebooks,dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv demo test lint format bench notebooks clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -c constraints.txt pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: venv
	$(BIN)/digitlab data fetch mnist
	$(BIN)/digitlab run --overwrite

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m benchmarks

notebooks: venv
	$(BIN)/python notebooks/run.py --out docs/notebooks

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache src/*.egg-info

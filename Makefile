# The commands the README names. Every target sets up .venv on first use (idempotent: a stamp
# file records the last install, so a second run installs nothing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnkit-installed
LAB_ARGS ?=
PYTEST_ARGS ?=
CHAPTER ?=

.PHONY: setup lab test test-fast chapters figures lint

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[course,test]"
	@touch $(STAMP)

setup: $(STAMP)

## make lab: open JupyterLab on chapters/ (extra flags: make lab LAB_ARGS="--no-browser --port 8888")
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=chapters $(LAB_ARGS)

## make test: the whole suite: unit, property, parity, widget, exercise, font, nbval, browser
test: setup
	$(BIN)/python tools/browser_deps.py
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-cell-timeout=300 tests chapters/en chapters/zh $(PYTEST_ARGS)

## make test-fast: everything but the notebooks and the browser
test-fast: setup
	$(BIN)/python -m pytest tests --ignore=tests/browser $(PYTEST_ARGS)

## make chapters: build chapters/en and chapters/zh from chapters/src and execute them
##   (one chapter: make chapters CHAPTER=01; overwrite hand-edited notebooks: FORCE=1)
chapters: setup
	$(BIN)/python tools/build.py $(if $(FORCE),--force) $(CHAPTER)

## make figures: regenerate the static figures in figures/
figures: setup
	$(BIN)/python tools/figures.py

lint: setup
	$(BIN)/ruff check attnkit tests tools benchmarks

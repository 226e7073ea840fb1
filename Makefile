# The commands the README names. Every target sets up .venv on first use (idempotent: a stamp
# file records the last install, so a second run installs nothing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnkit-installed
LAB_ARGS ?=
PYTEST_ARGS ?=
CHAPTER ?=

.PHONY: setup lab test test-fast chapters figures site lint

# The pinned versions of constraints.txt need Python >= 3.11.5 (soupsieve 4.1.2 among them);
# the attnkit package alone works from 3.10. A clear stop instead of pip's ResolutionImpossible:
PY_MIN := (3, 11, 5)
$(STAMP): pyproject.toml constraints.txt tests/reference-packages.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < $(PY_MIN))' 2>/dev/null || { \
	  echo "make: the course's pinned packages (constraints.txt) need Python >= 3.11.5, but $(PYTHON) is $$($(PYTHON) --version 2>&1)." >&2; \
	  echo "      Point PYTHON at a newer one, for example: make test PYTHON=python3.12" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[course,test]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt -r tests/reference-packages.txt
	@touch $(STAMP)

setup: $(STAMP)

## make lab: open JupyterLab on chapters/ (extra flags: make lab LAB_ARGS="--no-browser --port 8888")
##   as root (containers, cloud machines, CI runners) it adds --allow-root and says so
ROOT_FLAG = $(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	@$(if $(ROOT_FLAG),echo "make lab: running as root: JupyterLab starts with --allow-root since Jupyter refuses root without it")
	$(BIN)/jupyter lab --ServerApp.root_dir=chapters $(ROOT_FLAG) $(LAB_ARGS)

## make test: the whole suite: unit, property, parity, widget, exercise, font, nbval, browser
##   it ends with the time of each phase (set-up, browser set-up, unit tests, notebooks, browser)
test:
	@PYTEST_ARGS='$(PYTEST_ARGS)' MAKE='$(MAKE)' $(PYTHON) tools/run_tests.py

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

## make site: the course as a static website in build/site/ from the stored notebooks (nothing is
##   executed or fetched; open build/site/index.html). make test builds its own copy to test it.
site: setup
	$(BIN)/python tools/site.py

lint: setup
	$(BIN)/ruff check attnkit tests tools benchmarks

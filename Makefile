# make book   — set up .venv and build the website into _build/html
# make test   — set up .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
JB_FLAGS := -W -n --keep-going

.PHONY: setup book book-student test chapters clean
.DEFAULT_GOAL := book

$(READY): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: later requirements then leave it alone.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -c requirements-lock.txt -e ".[all]"
	touch $@

setup: $(READY)

book: $(READY)
	$(BIN)/jupyter-book build . $(JB_FLAGS)

book-student: $(READY)
	BOOK_EDITION=student $(BIN)/jupyter-book build . $(JB_FLAGS) --path-output _build/student

test: $(READY)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

chapters: $(READY)
	$(BIN)/python -m attnlib release

clean:
	rm -rf _build

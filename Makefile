# make book     — set up .venv and build the website into _build/html, the Chinese one into _build/html/zh
# make book-zh  — only the Chinese website, into _build/html/zh
# make book-student — both websites without solutions, into _build/student/_build/html
# make test     — set up .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
JB_FLAGS := -W -n --keep-going
CACHE  := _build/.jupyter_cache
EXECUTED := $(CACHE)/.executed

ZH_OUT := _build/html/zh
ZH_DOCTREES := _build/.doctrees-zh_CN

.PHONY: setup execute book book-zh book-student catalogs test chapters clean
.DEFAULT_GOAL := book

$(READY): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: later requirements then leave it alone.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -c requirements-lock.txt -e ".[all]"
	touch $@

setup: $(READY)

# jupyter-book runs the chapters one after the other. Before it, whenever a chapter changed,
# jupyter-cache runs those whose code changed one per core, into the cache the build reads.
$(EXECUTED): $(READY) $(wildcard chapters/*/*.ipynb)
	mkdir -p $(CACHE)
	$(BIN)/jcache notebook -p $(CACHE) add chapters/*/*.ipynb
	$(BIN)/jcache project -p $(CACHE) execute --executor local-parallel --timeout 300
	touch $@

execute: $(EXECUTED)

book: execute
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	$(MAKE) book-zh

# The Chinese site: the same executed chapters, the prose from locales/zh_CN.
book-zh: execute
	$(BIN)/python book/translations.py build zh_CN $(ZH_OUT) $(ZH_DOCTREES)

# The catalogs follow the English prose: new messages empty, changed ones fuzzy.
catalogs: $(READY)
	$(BIN)/python book/translations.py update

# Without solutions, in both languages (the language switcher of every page resolves).
book-student: execute
	BOOK_EDITION=student $(BIN)/jupyter-book build . $(JB_FLAGS) --path-output _build/student
	BOOK_EDITION=student $(BIN)/python book/translations.py build zh_CN \
	    _build/student/_build/html/zh _build/student/_build/.doctrees-zh_CN

test: $(READY)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

chapters: $(READY)
	$(BIN)/python -m attnlib release

clean:
	rm -rf _build

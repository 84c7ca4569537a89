# Two commands do all set-up: `make demo` runs the main job on the sample scene, `make test` runs
# the test suite. Both create .venv and install geoseg into it the first time, and reuse it while
# pyproject.toml is unchanged (the stamp file name carries a hash of it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SPEC   := $(shell $(PYTHON) -c "import hashlib;print(hashlib.sha1(open('pyproject.toml','rb').read()).hexdigest()[:12])")
STAMP  := $(VENV)/.installed-$(SPEC)
SCENE  := sample_data/rotterdam_ps_rgb.tif
OUTDIR ?= demo_output
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	$(BIN)/geoseg info $(SCENE)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check geoseg tests benchmarks
	$(BIN)/mypy geoseg

bench: install
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_vectorize.py

clean:
	rm -rf $(VENV) $(OUTDIR) .pytest_cache

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

DUBAI  ?=
RUN    ?= runs/dubai-default

.PHONY: install demo test lint bench clean default-model

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# The main job: segment the sample scene with the bundled model into a class-mask COG, polygons and a quicklook.
demo: install
	@mkdir -p $(OUTDIR)
	$(BIN)/geoseg predict $(SCENE) $(OUTDIR)/classes.tif --vector $(OUTDIR)/polygons.gpkg \
		--quicklook $(OUTDIR)/quicklook.png --overwrite
	@echo "outputs in $(OUTDIR)/: classes.tif (class-mask COG), polygons.gpkg, quicklook.png"

# Retrain the bundled model on the Dubai dataset (Tile 8 test, Tile 1 validation), score it, ship it.
default-model: install
	@test -n "$(DUBAI)" || { echo "usage: make default-model DUBAI='/path/to/Semantic segmentation dataset'"; exit 2; }
	$(BIN)/geoseg train --config dubai-default data.root="$(DUBAI)" -o $(RUN) --overwrite
	$(BIN)/geoseg evaluate $(RUN)/model.safetensors --config dubai-default data.root="$(DUBAI)" -o $(RUN)/test
	cp $(RUN)/model.safetensors sample_data/dubai-landcover-unet.safetensors

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check geoseg tests benchmarks
	$(BIN)/mypy geoseg

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_vectorize.py
	$(BIN)/python benchmarks/bench_dataset.py
	$(BIN)/python benchmarks/bench_default_model.py

clean:
	rm -rf $(VENV) $(OUTDIR) .pytest_cache

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
# the ten slowest tests are listed after every run, CI included
PYTEST_ARGS ?= --durations=10
PYTHON_CHECK ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

DUBAI  ?=
RUN    ?= runs/dubai-default

.PHONY: install demo app test lint bench clean default-model image image-gpu image-check

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

# The web app on http://127.0.0.1:7860 (MODELS=folder of .safetensors checkpoints to offer too).
MODELS ?=
app: install
	$(BIN)/geoseg app $(if $(MODELS),--models $(MODELS))

# Retrain the bundled model on the Dubai dataset (Tile 8 test, Tile 1 validation), score it, ship it.
default-model: install
	@test -n "$(DUBAI)" || { echo "usage: make default-model DUBAI='/path/to/Semantic segmentation dataset'"; exit 2; }
	$(BIN)/geoseg train --config dubai-default data.root="$(DUBAI)" -o $(RUN) --overwrite
	$(BIN)/geoseg evaluate $(RUN)/model.safetensors --config dubai-default data.root="$(DUBAI)" -o $(RUN)/test
	cp $(RUN)/model.safetensors geoseg/models/weights/dubai-landcover-unet.safetensors

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
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_app.py

# Container image (README "Container image"). CONTAINER=docker works too. Podman builds use the
# docker format (it keeps the HEALTHCHECK) and chroot isolation (RUN steps work where containers
# cannot start). With PIP_CERT set (a TLS-inspecting proxy), its CA bundle is lent to pip in the
# build as the secret `ca-bundle`, never stored in the image.
CONTAINER ?= podman
IMAGE     ?= geoseg:latest
IMAGE_GPU ?= geoseg:gpu
comma := ,
IMAGE_BUILD_ARGS ?= $(if $(filter podman,$(notdir $(CONTAINER))),--format docker --isolation chroot,) \
	$(if $(PIP_CERT),--secret id=ca-bundle$(comma)src=$(PIP_CERT),)

image:
	$(CONTAINER) build $(IMAGE_BUILD_ARGS) -f Containerfile -t $(IMAGE) .

image-gpu:
	$(CONTAINER) build $(IMAGE_BUILD_ARGS) -f Containerfile.gpu -t $(IMAGE_GPU) .

# Builds the base with debootstrap when missing, builds the image, runs geoseg inside it (chroot), cleans up.
image-check:
	IMAGE=$(IMAGE) PYTHON=$(PYTHON_CHECK) scripts/image-check.sh
	$(BIN)/python benchmarks/bench_distributed.py

clean:
	rm -rf $(VENV) $(OUTDIR) .pytest_cache

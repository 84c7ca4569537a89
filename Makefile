# Two commands do all set-up: `make demo` runs the main job on the sample scene, `make test` runs
# the test suite. Both create .venv and install geoseg into it the first time, and reuse it while
# pyproject.toml is unchanged (the stamp file name carries a hash of it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SPEC   := $(shell $(PYTHON) -c "import hashlib;print(hashlib.sha1(open('pyproject.toml','rb').read()).hexdigest()[:12])")
STAMP  := $(VENV)/.installed-$(SPEC)
SCENE  := sample_data/rotterdam_ps_rgb.tif
HELDOUT := sample_data/dubai-heldout
OUTDIR ?= demo_output
# the ten slowest tests are listed after every run, CI included
PYTEST_ARGS ?= --durations=10
PYTHON_CHECK ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

DUBAI  ?=
RUN    ?= runs/dubai

.PHONY: install demo app test lint docs bench stress clean default-model int8-models image image-gpu image-check qgis-plugin

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# The main job: segment the sample scene with the bundled model into a class-mask COG, polygons and a
# quicklook; then score the model on a held-out Dubai image, drawn with its ground truth beside the prediction.
demo: install
	@mkdir -p $(OUTDIR)
	$(BIN)/geoseg predict $(SCENE) $(OUTDIR)/classes.tif --vector $(OUTDIR)/polygons.gpkg \
		--quicklook $(OUTDIR)/quicklook.png --overwrite
	$(BIN)/geoseg evaluate --images $(HELDOUT)/images --labels $(HELDOUT)/labels -o $(OUTDIR)/dubai-heldout
	@echo "outputs in $(OUTDIR)/: classes.tif (class-mask COG), polygons.gpkg, quicklook.png;" \
		"dubai-heldout/quicklooks/ (truth beside prediction), dubai-heldout/metrics.json"

# The web app on http://127.0.0.1:7860 (MODELS=folder of .safetensors checkpoints to offer too).
MODELS ?=
app: install
	$(BIN)/geoseg app $(if $(MODELS),--models $(MODELS))

# Retrain a bundled model on the Dubai dataset, score it on the held-out Tile 8 and ship it (int8
# weights, the shipped weights' own test scores in its config). MODEL=quality (the default model:
# tiles 1-7 train) or MODEL=fast (tiles 2-7 train, Tile 1 chooses the epoch).
MODEL  ?= quality
CONFIG_quality := dubai-default
CONFIG_fast    := dubai-fast
SHIP_quality   := dubai-landcover-unet.safetensors
SHIP_fast      := dubai-landcover-fast.safetensors
default-model: install
	@test -n "$(DUBAI)" || { echo "usage: make default-model DUBAI='/path/to/Semantic segmentation dataset' [MODEL=quality|fast]"; exit 2; }
	@test -n "$(CONFIG_$(MODEL))" || { echo "MODEL=$(MODEL): expected quality or fast"; exit 2; }
	$(BIN)/geoseg train --config $(CONFIG_$(MODEL)) data.root="$(DUBAI)" -o $(RUN)-$(MODEL) --overwrite
	$(BIN)/geoseg evaluate $(RUN)-$(MODEL)/model.safetensors --config $(CONFIG_$(MODEL)) data.root="$(DUBAI)" -o $(RUN)-$(MODEL)/test
	$(BIN)/python scripts/ship_model.py $(RUN)-$(MODEL)/model.safetensors $(RUN)-$(MODEL)/test/metrics.json \
		geoseg/models/weights/$(SHIP_$(MODEL)) "Tile 8"
	@# score the shipped (int8) weights themselves and record those scores
	$(BIN)/geoseg evaluate geoseg/models/weights/$(SHIP_$(MODEL)) --config $(CONFIG_$(MODEL)) data.root="$(DUBAI)" \
		-o $(RUN)-$(MODEL)/test-shipped --no-quicklooks
	$(BIN)/python scripts/ship_model.py $(RUN)-$(MODEL)/model.safetensors $(RUN)-$(MODEL)/test-shipped/metrics.json \
		geoseg/models/weights/$(SHIP_$(MODEL)) "Tile 8"

# Calibrated int8 copies of both bundled models in $(RUN)-int8/ (their training tiles calibrate:
# Dubai tiles 1-7 for quality, 2-7 for fast; agreement with fp32 and mIoU recorded on the held-out
# Tile 8; the stored weights stay as they are). The package ships the models without them: see
# geoseg/models/weights/PROVENANCE.md for why.
int8-models: install
	@test -n "$(DUBAI)" || { echo "usage: make int8-models DUBAI='/path/to/Semantic segmentation dataset'"; exit 2; }
	@mkdir -p $(RUN)-int8
	$(BIN)/geoseg quantize quality $(RUN)-int8/$(SHIP_quality) --config $(CONFIG_quality) data.root="$(DUBAI)" --overwrite
	$(BIN)/geoseg quantize fast $(RUN)-int8/$(SHIP_fast) --config $(CONFIG_fast) data.root="$(DUBAI)" --overwrite

# The QGIS Processing provider as a zip for Plugins > Manage and Install Plugins > Install from ZIP;
# it runs this environment's geoseg (docs/qgis.md). `geoseg qgis-plugin install` installs it directly.
qgis-plugin: install
	@mkdir -p dist
	$(BIN)/geoseg qgis-plugin zip dist/geoseg_processing.zip --overwrite

# The fault matrix (tests/faults/test_matrix.py: every writer under every fault, mostly waiting on
# the processes it starts) runs beside the rest of the suite, in a second pytest; its report
# follows the suite's, and either failing fails the target. `pytest` alone runs both in one.
test: install
	@log=$$(mktemp); \
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=5 tests/faults/test_matrix.py >$$log 2>&1 & matrix=$$!; \
	trap 'kill $$matrix 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest $(PYTEST_ARGS) --ignore=tests/faults/test_matrix.py; suite=$$?; \
	wait $$matrix; faults=$$?; \
	echo "== the fault matrix, run beside the suite (exit $$faults):"; cat $$log; rm -f $$log; \
	[ $$suite -eq 0 ] && [ $$faults -eq 0 ]

lint: install
	$(BIN)/ruff check geoseg tests benchmarks scripts
	$(BIN)/ruff format --check geoseg tests benchmarks scripts
	$(BIN)/mypy geoseg

# The documentation site into site/ (strict: broken links and references fail). The dev extra
# already brings the docs tools; installing the `docs` extra keeps this target right on its own.
docs: install
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/python -m mkdocs build --strict --site-dir site

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_bf16.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_vectorize.py
	$(BIN)/python benchmarks/bench_dataset.py
	$(BIN)/python benchmarks/bench_default_model.py
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_app.py

# Container image (docs/container.md). CONTAINER=docker works too. Podman builds use the
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

# The fault matrix at every free-space point, then predict interrupted 50 times with SIGTERM and 50
# with SIGINT at random moments (exit-code histogram, 0 crashes expected), then 20 predictions on a
# Dask worker with two threads (0 deaths expected).
RUNS ?= 50
stress: install
	GEOSEG_FAULT_MATRIX=full $(BIN)/python -m pytest -q tests/faults/test_matrix.py
	$(BIN)/python scripts/stress_signals.py --runs $(RUNS)
	$(BIN)/python scripts/stress_dask.py --runs 20

clean:
	rm -rf $(VENV) $(OUTDIR) .pytest_cache site

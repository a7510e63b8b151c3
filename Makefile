# One command each: `make demo`, `make test`. Both install first when needed. The napari plugin and
# its tests' Qt binding come too (about 560 MB and 2 minutes beside torch's 1.7 GB); the widgets' tests need
# Xvfb (`apt-get install xvfb`) and are skipped without it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch by default. On a GPU machine choose the build, e.g.
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=<the PyTorch wheel index for your CUDA>
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.installed

.PHONY: install demo demo-all test lint test-all bench bench-batch bench-meshft bench-acdr bench-cell-seg bench-spine-seg clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install --quiet -e ".[dev,slurm,ray,napari,napari-test]"
	touch $(STAMP)

demo: install
	$(BIN)/invrender spline-refine data/splines/worms.tif --init data/splines/worms.json --out demo-out
	@echo "outputs in demo-out/: worms.splines.json, worms.render.tif, worms.overlay.png, worms.loss.png, worms.rois.zip, manifest.json"

# One small demo per command on the data in data/ (and synthetic data made from it), each run on
# its own and timed, outputs in demo-out/<command>/; then docs/make_pictures.py copies every
# method's pictures to docs/<method>.<figure>.png (the README's Pictures).
DEMO := demo-out
# $(call timed,NAME,COMMAND): run COMMAND and print how long it took.
timed = start=$$(date +%s); $(2) && echo "demo-all: $(1) took $$(( $$(date +%s) - start )) s"
# A tiny ACDRNet on 32 x 32 synthetic shapes.
ACDR_TINY := data.size=32 model.widths=[8,16] model.convs=2 train.batch_size=8 train.lr=0.003 train.epochs=20

demo-all: install
	rm -rf $(addprefix $(DEMO)/,synth spline-refine cell-seg cell-eval mesh-fit acdr-train acdr-eval acdr-predict spine-seg)
	@$(call timed,spline-refine,$(BIN)/invrender spline-refine data/splines/worms.tif --init data/splines/worms.json --out $(DEMO)/spline-refine -q)
	@$(call timed,cell-seg on data/nuclei,$(BIN)/invrender cell-seg data/nuclei/img2d_left.tif --out $(DEMO)/cell-seg/nuclei -q)
	@$(call timed,synth cells,$(BIN)/invrender synth cells --frames 8 --size 128 --cells 6 --divisions 2 --out $(DEMO)/synth/cells)
	@$(call timed,cell-seg on the time-lapse,$(BIN)/invrender cell-seg $(DEMO)/synth/cells/01 --out $(DEMO)/cell-seg/01_RES -q)
	@$(call timed,cell-eval,$(BIN)/invrender cell-eval $(DEMO)/cell-seg/01_RES $(DEMO)/synth/cells/01_GT --json $(DEMO)/cell-eval/scores.json)
	@$(call timed,synth mesh,$(BIN)/invrender synth mesh data/meshes/spot.obj --size 48 --out $(DEMO)/synth/mesh)
	@$(call timed,mesh-fit,$(BIN)/invrender mesh-fit $(DEMO)/synth/mesh/spot.tif --out $(DEMO)/mesh-fit -q)
	@$(call timed,synth shapes,$(BIN)/invrender synth shapes --count 60 --size 32 --out $(DEMO)/synth/shapes)
	@$(call timed,acdr-train,$(BIN)/invrender acdr-train data.root=$(DEMO)/synth/shapes $(ACDR_TINY) --out $(DEMO)/acdr-train -q)
	@$(call timed,acdr-eval,$(BIN)/invrender acdr-eval --checkpoint $(DEMO)/acdr-train/checkpoints/best.pt --data $(DEMO)/synth/shapes --out $(DEMO)/acdr-eval -q)
	@$(call timed,acdr-predict,$(BIN)/invrender acdr-predict '$(DEMO)/synth/shapes/images/shape_000*.png' --checkpoint $(DEMO)/acdr-train/checkpoints/best.pt --out $(DEMO)/acdr-predict -q)
	@$(call timed,synth ct,$(BIN)/invrender synth ct --labels data/spine/verse004_lumbar_msk.nii.gz --centroids data/spine/verse004_lumbar_ctd.json --levels 21-23 --spacing 2 --out $(DEMO)/synth/ct)
	@$(call timed,spine-seg,$(BIN)/invrender spine-seg $(DEMO)/synth/ct/synth-verse004_lumbar-s0_ct.nii.gz --centroids $(DEMO)/synth/ct/synth-verse004_lumbar-s0_ctd.json --gt $(DEMO)/synth/ct/synth-verse004_lumbar-s0_msk.nii.gz --out $(DEMO)/spine-seg -q phases.0.steps=300)
	$(BIN)/python docs/make_pictures.py $(DEMO) docs

# The lint (ruff) and the layering (import-linter, pyproject.toml's contracts) first: they take a second.
test: install lint
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check invrender tests bench
	$(BIN)/ruff format --check --quiet invrender tests bench
	$(BIN)/lint-imports --no-cache

test-all: install
	$(BIN)/pytest -q -m ""

bench: install
	$(BIN)/python bench/spline_refine.py

bench-batch: install
	$(BIN)/python bench/batch_throughput.py

bench-meshft: install
	$(BIN)/python bench/meshft.py

bench-acdr: install
	$(BIN)/python bench/acdr.py

bench-cell-seg: install
	$(BIN)/python bench/cell_seg.py

bench-spine-seg: install
	$(BIN)/python bench/spine_seg.py

clean:
	rm -rf demo-out .pytest_cache

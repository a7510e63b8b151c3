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

.PHONY: install demo test lint test-all bench bench-batch bench-meshft bench-acdr bench-cell-seg bench-spine-seg clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install --quiet -e ".[dev,slurm,ray,napari,napari-test]"
	touch $(STAMP)

demo: install
	$(BIN)/invrender spline-refine data/splines/worms.tif --init data/splines/worms.json --out demo-out
	@echo "outputs in demo-out/: worms.splines.json, worms.render.tif, worms.overlay.png, manifest.json"

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

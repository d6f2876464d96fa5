# calcitrack: two commands on a fresh machine (Python >= 3.11, make, access to PyPI).
#   make run   set up .venv and analyse the shipped sample images into out/
#   make test  set up .venv with the test extra and run the tests

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-accuracy bench-misses bench-clutter bench-speed bench-batch samples qc-picture clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/calcitrack analyze sample_images --out out

test: $(STAMP)
	$(BIN)/python -m pytest

bench-accuracy: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py --seed 0 1 2 3 4 --jobs 2

bench-misses: $(STAMP)
	$(BIN)/python benchmarks/misses.py

bench-clutter: $(STAMP)
	$(BIN)/python benchmarks/clutter.py

bench-speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py

bench-batch: $(STAMP)
	$(BIN)/python benchmarks/batch.py

bench: bench-accuracy bench-speed bench-batch

samples: $(STAMP)
	$(BIN)/calcitrack phantom samples --out sample_images

qc-picture: $(STAMP)
	$(BIN)/calcitrack phantom qc --real ../shared/data/radiographs/hand_pa_cr_j2k_lossless.dcm \
		--samples sample_images --out docs/phantoms.png

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

# ppencrypt / pptrain batch jobs. `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# make encrypt SRC=... OUT=... KEY=... [METHOD=pe] [SCOPE=image] [FORMAT=wds] [SIZE=] [WORKERS=]
SRC ?=
OUT ?=
KEY ?= keys/default.key
METHOD ?= pe
SCOPE ?= image
FORMAT ?= wds
SIZE ?=
WORKERS ?=
# make train DATA=... RUN=... [EPOCHS=] [WIDTH=] [ARCH=] [RECIPE=] [DEVICE=]   make eval RUN=... DATA=...
DATA ?=
RUN ?=
EPOCHS ?=
WIDTH ?=
ARCH ?=
RECIPE ?=
DEVICE ?=
# make reproduce [EPOCHS=30] [WIDTH=64] [DEVICE=auto] [CIFAR10=path/to/cifar-10-batches-py] [ROWS=id,...]
CIFAR10 ?=
ROWS ?=
REPRO_ARGS = $(or $(CIFAR10),$(FMNIST)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(WIDTH),--width $(WIDTH)) \
  $(if $(DEVICE),--device $(DEVICE)) $(if $(ROWS),--rows $(ROWS))

# make bench [BENCH_QUICK=1]   make bench-record [BENCH_QUICK=1]
BENCH_QUICK ?=
QUICK := $(filter-out 0 no false,$(BENCH_QUICK))
BENCH_SCRIPTS := cipher_throughput dataset_write photo_write photo_decode input_pipeline train_cpu audit remote_stream source_stream scale_write
BENCH_OUT = out/bench-$(if $(QUICK),quick,full)

.PHONY: install test data demo encrypt train eval bench bench-run bench-record reproduce reproduce-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev,s3,gcs,http,dask]'
	touch $@

test: install
	$(BIN)/python -m pytest -q

data:
	@if [ -d $(FMNIST) ]; then echo "Fashion-MNIST: $(FMNIST)"; else \
	  $(SUDO) apt-get install -y dataset-fashion-mnist || { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }; fi

demo: install data
	@mkdir -p out
	@[ -f keys/demo.key ] || $(BIN)/ppencrypt keygen keys/demo.key
	$(BIN)/ppencrypt dataset $(FMNIST) out/demo --key keys/demo.key --overwrite
	$(BIN)/ppencrypt verify out/demo
	$(BIN)/ppencrypt inspect out/demo
	$(BIN)/ppencrypt preview out/demo -o out/demo-preview.png --key keys/demo.key
	$(BIN)/pptrain out/demo --width 8 --epochs 1 --run-dir out/demo-run --overwrite
	$(BIN)/pptrain eval out/demo-run out/demo

encrypt: install
	@if [ -z "$(SRC)" ] || [ -z "$(OUT)" ]; then \
	  echo "usage: make encrypt SRC=dir OUT=dir KEY=keyfile [METHOD=pe] [SCOPE=image] [FORMAT=wds] [SIZE=n] [WORKERS=n]" >&2; exit 2; fi
	$(BIN)/ppencrypt dataset $(SRC) $(OUT) --key $(KEY) --method $(METHOD) --key-scope $(SCOPE) --format $(FORMAT) \
	  $(if $(SIZE),--size $(SIZE)) $(if $(WORKERS),--workers $(WORKERS))

train: install
	@if [ -z "$(DATA)" ] || [ -z "$(RUN)" ]; then \
	  echo "usage: make train DATA=dataset RUN=rundir [EPOCHS=n] [WIDTH=n] [ARCH=name] [RECIPE=fast|paper|reference] [DEVICE=auto|cpu|cuda]" >&2; exit 2; fi
	$(BIN)/pptrain $(DATA) --run-dir $(RUN) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(WIDTH),--width $(WIDTH)) \
	  $(if $(ARCH),--arch $(ARCH)) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(DEVICE),--device $(DEVICE))

eval: install
	@if [ -z "$(DATA)" ] || [ -z "$(RUN)" ]; then echo "usage: make eval RUN=rundir DATA=dataset" >&2; exit 2; fi
	$(BIN)/pptrain eval $(RUN) $(DATA)

# Every benchmark writes its key ratios (ours / the baseline of the same run) to $(BENCH_OUT);
# bench/guard.py compares them with docs/benchmarks.md's "Recorded ratios" (exit 1: one regressed
# by more than 25 %), or with bench-record rewrites that record. BENCH_QUICK=1: smaller sizes,
# compared with the quick record.
bench: bench-run
	$(BIN)/python bench/guard.py $(BENCH_OUT)

bench-record: bench-run
	$(BIN)/python bench/guard.py --record $(BENCH_OUT)

bench-run: install data
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	@for s in $(BENCH_SCRIPTS); do \
	  echo "== bench/$$s.py" && $(BIN)/python bench/$$s.py $(if $(QUICK),--quick) --json $(BENCH_OUT)/$$s.json || exit 1; done

# [P]'s Tables 2 and 3 (experiments/): tables into docs/results.md, runs under out/reproduce.
reproduce: install $(if $(CIFAR10),,data)
	$(BIN)/python -m experiments reproduce $(REPRO_ARGS) --work out/reproduce --doc docs/results.md

# The same tables on 300 training images, width 4, 1 epoch: checks the harness, not accuracy.
reproduce-smoke: install $(if $(CIFAR10),,data)
	$(BIN)/python -m experiments reproduce $(REPRO_ARGS) --smoke --work out/reproduce-smoke

clean:
	rm -rf out build *.egg-info .pytest_cache .hypothesis

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
# make train DATA=... RUN=... [EPOCHS=] [WIDTH=] [RECIPE=] [DEVICE=]   make eval RUN=... DATA=...
DATA ?=
RUN ?=
EPOCHS ?=
WIDTH ?=
RECIPE ?=
DEVICE ?=
# make reproduce [EPOCHS=30] [WIDTH=64] [DEVICE=auto] [CIFAR10=path/to/cifar-10-batches-py] [ROWS=id,...]
CIFAR10 ?=
ROWS ?=
REPRO_ARGS = $(or $(CIFAR10),$(FMNIST)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(WIDTH),--width $(WIDTH)) \
  $(if $(DEVICE),--device $(DEVICE)) $(if $(ROWS),--rows $(ROWS))

.PHONY: install test data demo encrypt train eval bench reproduce reproduce-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev,s3,gcs,http]'
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
	rm -rf out/demo-run
	$(BIN)/pptrain out/demo --width 8 --epochs 1 --run-dir out/demo-run
	$(BIN)/pptrain eval out/demo-run out/demo

encrypt: install
	@if [ -z "$(SRC)" ] || [ -z "$(OUT)" ]; then \
	  echo "usage: make encrypt SRC=dir OUT=dir KEY=keyfile [METHOD=pe] [SCOPE=image] [FORMAT=wds] [SIZE=n] [WORKERS=n]" >&2; exit 2; fi
	$(BIN)/ppencrypt dataset $(SRC) $(OUT) --key $(KEY) --method $(METHOD) --key-scope $(SCOPE) --format $(FORMAT) \
	  $(if $(SIZE),--size $(SIZE)) $(if $(WORKERS),--workers $(WORKERS))

train: install
	@if [ -z "$(DATA)" ] || [ -z "$(RUN)" ]; then \
	  echo "usage: make train DATA=dataset RUN=rundir [EPOCHS=n] [WIDTH=n] [RECIPE=fast|paper|reference] [DEVICE=auto|cpu|cuda]" >&2; exit 2; fi
	$(BIN)/pptrain $(DATA) --run-dir $(RUN) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(WIDTH),--width $(WIDTH)) \
	  $(if $(RECIPE),--recipe $(RECIPE)) $(if $(DEVICE),--device $(DEVICE))

eval: install
	@if [ -z "$(DATA)" ] || [ -z "$(RUN)" ]; then echo "usage: make eval RUN=rundir DATA=dataset" >&2; exit 2; fi
	$(BIN)/pptrain eval $(RUN) $(DATA)

bench: install data
	$(BIN)/python bench/cipher_throughput.py
	$(BIN)/python bench/dataset_write.py
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/train_cpu.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/remote_stream.py

# [P]'s Tables 2 and 3 (experiments/): tables into docs/results.md, runs under out/reproduce.
reproduce: install $(if $(CIFAR10),,data)
	$(BIN)/python -m experiments reproduce $(REPRO_ARGS) --work out/reproduce --doc docs/results.md

# The same tables on 300 training images, width 4, 1 epoch: checks the harness, not accuracy.
reproduce-smoke: install $(if $(CIFAR10),,data)
	$(BIN)/python -m experiments reproduce $(REPRO_ARGS) --smoke --work out/reproduce-smoke

clean:
	rm -rf out build *.egg-info .pytest_cache .hypothesis

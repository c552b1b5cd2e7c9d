# transformer-mt: `make train CONFIG=configs/sample.yaml` and `make test` set up everything they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/sample.yaml
ARGS ?=
NPROC ?= 1
TEXT ?= I am hungry.
# Handed to the recipe through the environment, so quotes, $ and apostrophes in it reach translate.py as typed.
export TEXT
RUN ?=
# torch goes in first and pinned, so nothing that depends on it can pull a multi-GB CUDA build on a
# CPU machine. Elsewhere, TORCH_INDEX=https://download.pytorch.org/whl/cpu (or a CUDA index) picks the build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install install-dev train translate evaluate export tensorboard test bench bench-deploy bench-data bench-export bench-serve bench-shapes serve check-gpu clean-venv

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -q -e ".[plot]"
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,plot,bench,deploy,hub,serve]"
	@touch $@

# The last transformers 4.x beside the venv's 5.x, for a second run of the transformers-export tests
# (exports must load with both). --no-deps: nothing in it may shadow the venv's torch or numpy.
$(VENV)/.installed-transformers4: $(VENV)/.installed
	$(PY) -m pip install -q --upgrade --no-deps --target $(VENV)/transformers4 "transformers>=4.57,<5" \
		"huggingface_hub>=0.34,<1" "tokenizers>=0.22,<0.23" requests charset-normalizer idna urllib3 certifi
	@touch $@

$(VENV)/.installed-serve: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[plot,deploy,serve]"
	@touch $@

$(VENV)/.installed-deploy: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[plot,deploy,hub]"
	@touch $@

train: install
ifeq ($(NPROC),1)
	$(PY) scripts/train.py $(CONFIG) $(ARGS)
else
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC) scripts/train.py $(CONFIG) $(ARGS)
endif

translate: install
	$(PY) scripts/translate.py $(if $(RUN),--run $(RUN)) -- "$$TEXT"

evaluate: install
	$(PY) scripts/evaluate.py $(if $(RUN),--run $(RUN)) $(ARGS)

export: $(VENV)/.installed-deploy
	$(PY) scripts/export.py $(if $(RUN),--run $(RUN)) $(ARGS)

# MODEL=exports/NAME (a CTranslate2 export) or RUN=runs/NAME; ARGS="--port 5001 ..." (scripts/serve.py --help).
serve: $(VENV)/.installed-serve
	$(PY) scripts/serve.py $(if $(MODEL),--model $(MODEL)) $(if $(RUN),--run $(RUN)) $(ARGS)

tensorboard: install
	$(VENV)/bin/tensorboard --logdir runs

test: install-dev $(VENV)/.installed-transformers4
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests
	PYTHONPATH=$(VENV)/transformers4 $(PY) -m pytest -q tests/export/test_transformers.py

bench: install-dev
	$(PY) scripts/bench.py --device $(or $(DEVICE),cpu) $(ARGS)
	$(PY) scripts/bench_deploy.py

bench-deploy: install-dev
	$(PY) scripts/bench_deploy.py $(ARGS)

# On a GPU machine, with the PyTorch installed there (no .venv, no network): docs/gpu-check.md.
check-gpu:
	$(PYTHON) scripts/check_gpu.py $(ARGS)

# The transformers export of RUN (default runs/sample) against the run itself on its test split.
bench-export: install-dev
	$(PY) scripts/export.py --run $(or $(RUN),runs/sample) --format transformers --output exports/$(notdir $(or $(RUN),runs/sample))-hf --force
	$(PY) scripts/bench_export.py --run $(or $(RUN),runs/sample) --export exports/$(notdir $(or $(RUN),runs/sample))-hf $(ARGS)

# The server under load (RUN, default runs/sample: its int8 CTranslate2 export, made if missing, and its
# PyTorch model), beside --no-batching and offline translation; then overload and a 5-minute soak.
bench-serve: install-dev
	@test -d exports/$(notdir $(or $(RUN),runs/sample))-ct2-int8 || $(PY) scripts/export.py --run $(or $(RUN),runs/sample) \
		--quantization int8 --output exports/$(notdir $(or $(RUN),runs/sample))-ct2-int8
	$(PY) scripts/bench_serve.py --run $(or $(RUN),runs/sample) $(ARGS)

bench-data: install-dev
	$(PY) scripts/bench_data.py $(ARGS)

bench-shapes: install
	$(PY) scripts/bench_shapes.py $(ARGS)

clean-venv:
	rm -rf $(VENV)

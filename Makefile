# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv first.
# PYTHON: the interpreter the venv is made from (the pins are tested on Python 3.11), e.g.
#   make install PYTHON=python3.11
# TORCH=cpu: torch's CPU-only build from PyTorch's own index, for machines without an NVIDIA GPU
#   (no CUDA libraries: a much smaller .venv). The default is the registry's build (CUDA on Linux x86-64).
PYTHON ?= python3
TORCH ?= default
TORCH_INDEX_default :=
TORCH_INDEX_cpu := --index-url https://download.pytorch.org/whl/cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAMPLE := sample
RUN := runs/sample

.PHONY: demo test install bench clean

install: $(STAMP)

# torch goes in first and stays pinned (-c) for every later install, so nothing can swap it.
$(STAMP): requirements.txt requirements-torch.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "$(PYTHON) is not Python 3.11, \
	which the pins are tested on: give one, e.g. make install PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX_$(TORCH)) -r requirements-torch.txt
	$(BIN)/python -m pip install -q -c requirements-torch.txt -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mfhq sample --out $(SAMPLE)
	rm -rf $(RUN)  # a fresh demo run each time (a real run resumes instead)
	$(BIN)/mfhq extract --root $(SAMPLE)/videos --out $(RUN) --pipeline pipelines/sample.yaml
	$(BIN)/mfhq summary --run $(RUN)
	$(BIN)/mfhq cluster-sample --run $(RUN) --manifest manifests --pipeline pipelines/sample.yaml
	$(BIN)/mfhq stats --run $(RUN) --manifest manifests --out reports
	rm -rf runs/omniid-demo runs/omniid-demo-flow
	# tiny-swap: trained until the representation carries identity (identity-swap gap on held-out frames printed at the end)
	$(BIN)/omniid-train --manifest manifests/train.parquet --preset tiny-swap --stage mtd --out runs/omniid-demo
	$(BIN)/omniid-train --manifest manifests/train.parquet --preset tiny-swap --stage flow --init-from runs/omniid-demo --out runs/omniid-demo-flow
	@echo "Output: $(RUN)/faces (one row per face), $(RUN)/clips (one row per clip), $(RUN)/crops, $(RUN)/masks;"
	@echo "        manifests/train.parquet, manifests/test.parquet (+ manifest.json); reports/report.html;"
	@echo "        runs/omniid-demo (tiny-swap MTD stage: log.jsonl with the identity-swap gap, a safetensors checkpoint);"
	@echo "        runs/omniid-demo-flow (tiny-swap flow-matching stage from it: encoder + adapter checkpoint)"

test: $(STAMP)
	$(BIN)/lint-imports  # imports only point down: the contracts in pyproject.toml
	# two pytest-xdist workers, each given whole test files (a module's fixtures are made once); the sample
	# and its extract run are made once for both (tests/conftest.py: made_once)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/mfhq sample --out $(SAMPLE)
	$(BIN)/mfhq bench --root $(SAMPLE)/videos --pipeline pipelines/sample.yaml --out runs/bench

clean:
	rm -rf $(SAMPLE) runs reports manifests/*.parquet manifests/manifest.json manifests/README.md

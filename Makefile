# The README's two commands:
#   make demo   the main job on the default dataset
#   make test   the test suite
# Both create .venv and install hashsdk into it (editable, with every extra) when missing.
#
#   make gpu-check           on a GPU machine that has python3 with torch, torchvision, onnx and
#                            onnxruntime and no network: installs this checkout without
#                            dependencies into that python3, then runs benchmarks/gpu_check.py
#                            (HASHSDK_DATA: the folder or file of the CIFAR-10 archive;
#                            GPU_ARGS: more flags, e.g. --results DIR)
#   make gpu-check SMOKE=1   the same code paths on the CPU, tiny data, in .venv

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hashsdk-installed
PYTEST_ARGS ?= -q
DATASET ?= fashion-mnist
BITS ?= 32

.PHONY: test demo bench lint clean gpu-check

$(STAMP): pyproject.toml setup.py hashsdk/index/_kernel.c hashsdk/index/_mih.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,export,pretrained,bench,dev,milvus,docs,serve]'
	touch $(STAMP)

# the browser test of hashsdk serve drives Debian's Chromium (pip tools' browser downloads need
# the network); installed when missing, where apt-get is there and we are root
BROWSER_STAMP := $(VENV)/.browser-checked

$(BROWSER_STAMP): $(STAMP)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium and chromium-driver for the browser test"; \
	    apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) || \
	    echo "could not install chromium: the browser test will be skipped"; \
	  else echo "no chromium and no root apt-get: the browser test will be skipped"; fi; \
	fi
	touch $(BROWSER_STAMP)

test: $(STAMP) $(BROWSER_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) scripts/demo.py --dataset $(DATASET) --bits $(BITS)

# the trained CIFAR-10 model that encode.py scores INT8 on (from benchmarks/retrieval.py's
# over-fitting regime, see README); without it, encode.py times random weights only
ENCODE_CKPT ?= runs/ablation-cifar10-overfit/seed0/48bits-nofakes-noaug/checkpoint.pt

bench: $(STAMP)
	$(PY) benchmarks/search.py
	$(PY) benchmarks/metrics_speed.py
	$(PY) benchmarks/encode.py $(if $(wildcard $(ENCODE_CKPT)),--checkpoint $(ENCODE_CKPT),)
	$(PY) benchmarks/encode.py --backbone timm/resnet18 --image-size 224 --threads 2 --runs 5
	$(PY) benchmarks/index_updates.py
	$(PY) benchmarks/mih.py
	$(PY) scripts/readme_tables.py

ifdef SMOKE
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --smoke $(GPU_ARGS)
else
gpu-check:
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	$(PYTHON) benchmarks/gpu_check.py $(GPU_ARGS)
endif

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf build *.egg-info hashsdk/*.so hashsdk/index/*.so .pytest_cache

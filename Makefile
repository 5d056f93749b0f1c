# One venv in the repo; `install` is idempotent and a no-op when nothing changed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ann-installed

.PHONY: install test test-integration test-slow demo lint format clean gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

# Three tiers (README "Tests"): test is the fast one a contributor runs on every
# change; CI (.ci/run) runs test, then test-integration; test-slow is by hand.
test: install
	$(PY) -m pytest -q

test-integration: install
	$(PY) -m pytest -q -m integration

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) tools/train.py experiment=demo
	$(PY) tools/eval.py experiment=demo checkpoint=outputs/demo/checkpoints/best.pth

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Everything the demo writes (configs/paths/default.yaml: outputs/, and the
# shapes data generated under data/; data/demo is where older versions put it).
# Datasets prepared under data/ and the wheels of gpu-wheels stay.
clean:
	rm -rf outputs data/shapes data/demo

# Wheels for scripts/gpu_check.sh (docs/gpu_check.md): the packages the GPU
# machine's image lacks, for its Python 3.12 on x86-64, into a git-ignored
# folder that the device call carries. Each wheel is named and pinned and none
# is resolved (--no-deps): cityscapesscripts declares the old `typing`
# backport, which on PYTHONPATH would shadow the standard library. hydra-core
# 1.3.8 needs omegaconf < 2.4 and antlr4-python3-runtime 4.9.*, published as a
# source archive only (built here into its pure-Python wheel); albumentations
# 2.0.8 pins albucore 0.0.24, which needs stringzilla and simsimd; pydantic
# 2.14.4 pins pydantic-core 2.50.5, which needs typing-extensions >= 4.16.
GPU_WHEELS := .gpu-wheels
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
GPU_PINS := hydra-core==1.3.8 omegaconf==2.3.1 \
	albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16 \
	pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
	typing-extensions==4.16.0 \
	cityscapesscripts==2.3.0 appdirs==1.4.4 pyquaternion==0.9.9 coloredlogs==15.0.1 humanfriendly==10.0
GPU_TARGET := --python-version 3.12 --implementation cp --abi cp312 \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

gpu-wheels:
	rm -rf $(GPU_WHEELS).part && mkdir -p $(GPU_WHEELS).part
	$(GPU_PY) -m pip download -q --no-deps --only-binary=:all: $(GPU_TARGET) -d $(GPU_WHEELS).part $(GPU_PINS)
	$(GPU_PY) -m pip wheel -q --no-deps -w $(GPU_WHEELS).part antlr4-python3-runtime==4.9.3
	! ls $(GPU_WHEELS).part | grep -i '^typing-'
	rm -rf $(GPU_WHEELS) && mv $(GPU_WHEELS).part $(GPU_WHEELS)
	@ls -s $(GPU_WHEELS) && du -sh $(GPU_WHEELS)

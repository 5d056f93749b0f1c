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
# shapes data generated under data/). Datasets prepared under data/ and the
# wheels of gpu-wheels stay.
clean:
	rm -rf outputs data/shapes

# Wheels for scripts/gpu_check.sh (docs/gpu_check.md): the packages a GPU
# machine's image lacks, for its Python 3.12 on x86-64, into a git-ignored
# folder to copy to that machine with the repository. The pins, and why each
# is there, are in GPU_REQUIREMENTS, which the check reads as well. None is
# resolved (--no-deps): cityscapesscripts declares the old `typing` backport,
# which on PYTHONPATH would shadow the standard library. Lines marked `# sdist`
# (antlr4-python3-runtime, published as a source archive only) are built here
# into pure-Python wheels; pip ignores the comment lines either grep lets by.
GPU_WHEELS := .gpu-wheels
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
GPU_REQUIREMENTS := scripts/gpu-requirements.txt
GPU_TARGET := --python-version 3.12 --implementation cp --abi cp312 \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

gpu-wheels:
	rm -rf $(GPU_WHEELS).part && mkdir -p $(GPU_WHEELS).part
	grep -v '# sdist' $(GPU_REQUIREMENTS) | $(GPU_PY) -m pip download -q --no-deps --only-binary=:all: \
		$(GPU_TARGET) -d $(GPU_WHEELS).part -r /dev/stdin
	grep '# sdist' $(GPU_REQUIREMENTS) | $(GPU_PY) -m pip wheel -q --no-deps -w $(GPU_WHEELS).part -r /dev/stdin
	! ls $(GPU_WHEELS).part | grep -i '^typing-'
	rm -rf $(GPU_WHEELS) && mv $(GPU_WHEELS).part $(GPU_WHEELS)
	@ls -s $(GPU_WHEELS) && du -sh $(GPU_WHEELS)

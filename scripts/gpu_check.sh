#!/usr/bin/env bash
# The GPU check (docs/gpu_check.md): scripts/gpu_check.py does the work.
# Usage: bash scripts/gpu_check.sh OUT_DIR [--dry-run] [--skip-tests] [--skip-bench]
# PYTHON (default python3) is the interpreter the check and all its steps use.
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/gpu_check.py" "$@"

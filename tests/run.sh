#!/usr/bin/env bash
# The one test command: the library must be what the notebooks export, the notebooks must be clean, then pytest
# runs the notebooks' own tests and the plain tests in tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
nbdev_export
nbdev_clean
if ! git diff --quiet -- tbpr nbs; then
  echo "The library or notebooks are out of sync: run nbdev_export and nbdev_clean, then commit." >&2
  git --no-pager diff --stat -- tbpr nbs >&2
  exit 1
fi
python -m pytest -q "$@"

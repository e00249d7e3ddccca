#!/usr/bin/env bash
# The one test command: the library must be what the notebooks export, the notebooks must be clean, then pytest
# runs the notebooks' own tests and the plain tests in tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
# The library must be what the notebooks export, and the notebooks clean: checked on a copy, reported, never written.
bash tests/sync_check.sh
# The documentation test drives Chromium headless: install Debian's package when it is missing and we may.
if [ -z "${TBPR_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the documentation test (apt-get install chromium)" >&2
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
      || echo "could not install chromium; the documentation test will fail, the others run" >&2
  else
    echo "no chromium: install it (apt-get install chromium) or set TBPR_CHROMIUM; the documentation test will fail" >&2
  fi
fi
python -m pytest -q "$@"

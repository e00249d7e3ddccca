#!/usr/bin/env bash
# The one test command: the library must be what the notebooks export, the notebooks must be clean, then pytest
# runs the notebooks' own tests and the plain tests in tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
# Any change below tbpr/ or nbs/ (a modified, new or deleted file) after exporting and cleaning means the committed library
# is not what the committed notebooks export. (Commit your notebook edits first: uncommitted ones show up here too.)
nbdev_export
nbdev_clean
if [ -n "$(git status --porcelain -- tbpr nbs)" ]; then
  echo "The library or notebooks are out of sync with what is committed: run nbdev_export and nbdev_clean, then commit." >&2
  git status --short -- tbpr nbs >&2
  exit 1
fi
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

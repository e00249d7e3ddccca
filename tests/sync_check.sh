#!/usr/bin/env bash
# Is tbpr/ exactly what the notebooks export, and are the notebooks clean? Checked on a copy of the working tree (its
# tracked files and the new ones git does not ignore), so that nothing you have not committed is ever overwritten:
# the differences are reported, and the working tree is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
unset IN_TEST       # nbdev sets it while notebooks run, and nbdev_export then silently exports nothing
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done \
  | xargs -0 cp --parents -t "$copy"
cd "$copy"
git init -q
git add -A
git -c user.name=sync -c user.email=sync@localhost -c commit.gpgsign=false commit -q -m "the working tree"
nbdev_export
nbdev_clean
if [ -n "$(git status --porcelain -- tbpr nbs)" ]; then
  echo "The library or the notebooks differ from what the notebooks export and nbdev_clean writes:" >&2
  git status --short -- tbpr nbs >&2
  git --no-pager diff --stat -- tbpr nbs >&2
  echo "Edit the notebooks (not tbpr/), then run nbdev_export and nbdev_clean yourself; this check changed nothing." >&2
  exit 1
fi
echo "tbpr/ is what the notebooks export, and the notebooks are clean"

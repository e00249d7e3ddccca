#!/usr/bin/env bash
# README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto, which cannot be installed offline).
set -euo pipefail
cd "$(dirname "$0")/.."
jupyter nbconvert --to markdown --execute --ExecutePreprocessor.kernel_name=python3 \
  --RegexRemovePreprocessor.patterns="['^#\\| *(hide|export)']" --log-level=ERROR \
  --output-dir . --output README nbs/index.ipynb

#!/usr/bin/env bash
# Packs what a GPU session carries to the lent device machine (see scripts/device_session.sh), which
# reaches no package index and does not see ../shared: everything goes into .device/ (git-ignored),
# to be named in the device call's `carry`. Run here, from the repository root, after `make install`.
#
#   scripts/device_prepare.sh            # then: run(command="bash scripts/device_session.sh 540", carry=[".device"])
#
# - .device/whl: wheels (CPython 3.12, x86-64) of the project's dependencies that the device image lacks
#   (it ships torch, torch-geometric, numpy, scipy, pyyaml, tqdm, tensorboard, matplotlib), and the
#   project itself as a wheel, whose entry points register the baselines. gensim is left out on
#   purpose: it only trains word2vec when the preprocessing cache misses, and the cache travels.
# - .device/data.tar.gz: ../shared/data/redial (the raw files; their hashes are the data version).
# - .device/cache.tar: this code's preprocessing cache entry for ReDial under the default data settings
#   (built here first if missing), so the device spends no time preprocessing.
# The device call carries at most 64 MiB with the working tree; the script prints the total.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${CRSBENCH_DATA:-../shared/data}
rm -rf .device && mkdir -p .device/whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .device/whl \
  loguru fuzzywuzzy nltk platformdirs
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .device/whl .
tar czf .device/data.tar.gz -C "$DATA" redial
entry=$("$PY" - "$DATA" <<'PY'
import sys
from crsbench.config.loader import resolve_config
from crsbench.datasets.base import resolve_cache_dir
from crsbench.datasets.cache import entry_of
from crsbench.datasets.loader import current_content, dataset_spec
from crsbench.registry import get_dataset

class NoModel:
    config_file = None

data = resolve_config(NoModel, get_dataset("redial"))["data"]
current_content("redial", data, sys.argv[1])                 # builds the entry if this code has none yet
print(entry_of(dataset_spec("redial", data, sys.argv[1]), resolve_cache_dir(data.get("cache_dir"))))
PY
)
tar cf .device/cache.tar -C "$(dirname "$entry")" "$(basename "$entry")"
tree_mib=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
carry_mib=$(du -sb .device | cut -f1)
echo "prepared .device: $(ls .device/whl | tr '\n' ' ')"
echo "cache entry: $entry"
echo "carry $((carry_mib / 1048576)) MiB + working tree $((tree_mib / 1048576)) MiB (the limit is 64 MiB together)"

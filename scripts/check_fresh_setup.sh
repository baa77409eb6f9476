#!/usr/bin/env bash
# What a new user's machine sees: a clean clone of this checkout's committed state and an EMPTY
# dependency cache, so `make env` installs everything from the package registries. A warm cache
# (the normal `make test` path) would hide a missing install step; this does not.
#
# Then, from outside the clone, the package must import from the clone, and the environment
# tests (detectron2 imports, a Faster R-CNN training step, the package without detectron2) must
# pass. The temporary cache (about 5.5 GB) is removed at the end, whatever happens.
#
#     bash scripts/check_fresh_setup.sh          # .ci/run does this first (CI_FRESH=0 skips it)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/resnet_backbone_fresh.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "[fresh] clean clone of $(git -C "$repo" rev-parse --short HEAD) in $work/clone, empty cache $work/cache"
git clone --quiet "$repo" "$work/clone"
start=$(date +%s)
RESNET_BACKBONE_CACHE="$work/cache" make -C "$work/clone" env
echo "[fresh] environment created from the registries in $(( $(date +%s) - start )) s"
(cd / && "$work/clone/.venv/bin/python" -c "import resnet_backbone, sys; \
assert resnet_backbone.__file__.startswith('$work/clone/'), resnet_backbone.__file__; \
print('[fresh] import resnet_backbone from / ->', resnet_backbone.__file__)")
RESNET_BACKBONE_CACHE="$work/cache" make -C "$work/clone" test PYTEST_ARGS="tests/test_environment.py -q"
echo "[fresh] a new machine gets a working environment"

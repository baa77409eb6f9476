#!/usr/bin/env bash
# (Re)create .whl/: the Python packages scripts/gpu_suite.sh needs on a GPU machine that has
# torch, torchvision, numpy, pillow, matplotlib, tensorboard, tqdm, tabulate, portalocker,
# pyyaml, cloudpickle (and their dependencies) but no package registry. Run it here, with
# network access, from the repository root:
#
#     bash scripts/gpu_suite_wheels.sh            # then carry .whl/ (git-ignored) to the device
#
# Carried (pinned; the versions of this project's tested environment):
#   binary / pure-Python wheels from PyPI: pycocotools (cp312 manylinux x86-64), iopath, yacs,
#     omegaconf, hydra-core, termcolor, webdataset and braceexpand (DATASETS.FORMAT shards);
#   built here into py3-none-any wheels (PyPI has only sdists): fvcore, antlr4-python3-runtime,
#     and detectron2 v0.6 pure-Python (the sdist pb1-detectron2==0.6 patched exactly as
#     scripts/install_detectron2.py does: no extensions, distribution name "detectron2", the
#     placeholder detectron2/_C.py).
# Not carried on purpose: torch, torchvision, numpy, pillow (the device's own must be used),
# and detectron2's unused requirements (black, pydot, future: only LazyConfig.save and the
# caffe2 export import them). pillow<10 (PIL.Image.LINEAR, used by detectron2 v0.6 at import
# time) has no cp312 wheel; gpu_suite.sh writes a sitecustomize.py into its --target folder
# instead (see there).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}   # needs pip, torch and setuptools (detectron2's setup.py imports torch)
DEST=.whl
PY_VERSION=3.12

BINARY=(pycocotools==2.0.11 iopath==0.1.9 yacs==0.1.8 omegaconf==2.3.1 hydra-core==1.3.8 termcolor==3.3.0
        webdataset==1.0.2 braceexpand==0.1.7)
SDIST=(fvcore==0.1.5.post20221221 antlr4-python3-runtime==4.9.3)
D2_SDIST=pb1-detectron2==0.6

"$PYTHON" -c "import torch, setuptools" || { echo "error: $PYTHON needs torch and setuptools (make env)" >&2; exit 2; }
rm -rf "$DEST"
mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# pip, minus its notes about index locations of this machine's pip.conf that do not exist
pip_() { "$PYTHON" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

echo "== wheels from PyPI (cp$PY_VERSION manylinux x86-64 or pure Python)"
pip_ download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST" "${BINARY[@]}"

echo "== py3-none-any wheels built from sdists: ${SDIST[*]}"
pip_ wheel -q --no-deps --no-build-isolation --no-binary=:all: -w "$DEST" "${SDIST[@]}"

echo "== detectron2 v0.6, pure-Python build, from $D2_SDIST"
pip_ download -q --no-deps --no-binary=:all: --no-build-isolation -d "$tmp/sdist" "$D2_SDIST"
"$PYTHON" - "$tmp" <<'PY'
import importlib.util, sys, tarfile
from pathlib import Path
tmp = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("install_detectron2", "scripts/install_detectron2.py")
inst = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inst)
(archive,) = (tmp / "sdist").glob("*.tar.gz")
with tarfile.open(archive) as tar:
    tar.extractall(tmp / "src", filter="data")
(src,) = [p for p in (tmp / "src").iterdir() if p.is_dir()]
inst.patch_setup_py(src / "setup.py")
(src / "detectron2" / "_C.py").write_text(inst.PLACEHOLDER_C)
(tmp / "srcdir").write_text(str(src))
PY
pip_ wheel -q --no-deps --no-build-isolation -w "$DEST" "$(cat "$tmp/srcdir")"

echo "== $DEST"
ls -la "$DEST"
for w in "$DEST"/*.whl; do
    case "$(basename "$w")" in
        *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp312-cp312-manylinux*x86_64*.whl|*-cp312-abi3-manylinux*x86_64*.whl) ;;
        *) echo "error: $w is neither pure Python nor cp312 manylinux x86-64" >&2; exit 1 ;;
    esac
done
n=$(ls "$DEST"/*.whl | wc -l)
[ "$n" -eq 9 ] || { echo "error: expected 9 wheels, found $n" >&2; exit 1; }
du -sh "$DEST"

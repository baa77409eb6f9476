#!/usr/bin/env python
"""Make detectron2 importable in the running interpreter, without a compiler toolchain for its ops.

Detectron2 is not on PyPI. This script:

1. keeps a detectron2 that is already importable (for example upstream ``main`` built from
   source, with its compiled ``_C`` ops): nothing is installed;
2. otherwise installs detectron2 v0.6 from the PyPI sdist ``pb1-detectron2==0.6`` (upstream
   v0.6's Python sources, without the C++ sources) as a *pure-Python* build: the sdist is
   downloaded and unpacked in a temporary folder, its ``setup.py`` is told to build no
   extension and to install under upstream's distribution name ``detectron2``, and a
   placeholder ``detectron2/_C.py`` is added so that v0.6's unconditional ``from detectron2
   import _C`` imports succeed. Calling a compiled op (rotated boxes, deformable convolution,
   the fast COCO evaluation) then fails with a message that says how to get them.

Nothing of detectron2 is stored in this repository: its code comes from the registry at install
time. Needs torch already installed (detectron2's setup.py imports it).
"""
import argparse
import importlib.util
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "pb1-detectron2==0.6"

PLACEHOLDER_C = '''"""Placeholder for detectron2's compiled ops (written by resnet_backbone's installer).

This detectron2 v0.6 was installed from the PyPI sdist without its C++/CUDA sources, so the
compiled ops do not exist. Everything else in detectron2 works.
"""
PURE_PYTHON_BUILD = True

_HOW_TO_FIX = (
    "This detectron2 was installed without its compiled C++/CUDA ops (pure-Python build of "
    "detectron2 v0.6 by resnet_backbone's installer), so rotated boxes, deformable convolution "
    "and the fast COCO evaluation are unavailable. To use them, install detectron2 from source: "
    "python -m pip install 'git+https://github.com/facebookresearch/detectron2.git' "
    "(see README.md, 'Upstream detectron2')."
)


def __getattr__(name):
    raise AttributeError(f"detectron2._C.{name} is unavailable. " + _HOW_TO_FIX)
'''


def detectron2_importable() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def pip(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", *args])


def patch_setup_py(setup_py: Path) -> None:
    """Build no extension, and install under upstream's distribution name ``detectron2``."""
    text = setup_py.read_text()
    patched, n_ext = re.subn(r"ext_modules=get_extensions\(\),", "ext_modules=[],", text)
    patched, n_name = re.subn(r'name="pb1-detectron2",', 'name="detectron2",', patched)
    if n_ext != 1 or n_name != 1:
        raise SystemExit(
            f"Unexpected setup.py in {SDIST} (ext_modules found {n_ext}x, name found {n_name}x); "
            "install detectron2 from source instead (see README.md)."
        )
    setup_py.write_text(patched)


def install_pure_python_v06() -> None:
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("torch must be installed before detectron2 (its setup.py imports torch).")
    with tempfile.TemporaryDirectory(prefix="d2-sdist-") as tmp:
        tmp = Path(tmp)
        pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
            "-d", str(tmp), SDIST)
        (archive,) = tmp.glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (src,) = [p for p in tmp.iterdir() if p.is_dir()]
        patch_setup_py(src / "setup.py")
        (src / "detectron2" / "_C.py").write_text(PLACEHOLDER_C)
        pip("install", "--no-build-isolation", str(src))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true",
                        help="install the pure-Python v0.6 even if a detectron2 is importable")
    args = parser.parse_args()
    if detectron2_importable() and not args.force:
        import detectron2

        print(f"detectron2 {detectron2.__version__} already importable from "
              f"{Path(detectron2.__file__).parent}: keeping it.")
        return
    install_pure_python_v06()
    print("Installed detectron2 v0.6 (pure-Python build, no compiled ops).")


if __name__ == "__main__":
    main()

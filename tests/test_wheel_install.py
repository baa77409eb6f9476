"""The release a user installs: ``python -m build`` makes the sdist and the wheel; the wheel,
installed into a fresh venv, brings the configs, ``py.typed``, the license and the console
scripts; there ``resnet-train-cls`` trains a model and ``resnet-predict-cls`` predicts with it,
from a folder outside the checkout.

The fresh venv sees the third-party packages of the test environment through a ``.pth`` file
(their ~5 GB would otherwise be downloaded again), and ``pip install --no-index`` of the wheel
resolves the wheel's own ``install_requires`` against them: a dependency missing from the
metadata that the code imports fails the commands, one the environment lacks fails the install.
Nothing of this checkout is visible there (checked: the package imports from the venv).
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import resnet_backbone

from helpers import TOOL_THREADS

ROOT = Path(__file__).resolve().parents[1]
TINY = ["DATASETS.SYNTHETIC.NUM_TRAIN", "64", "DATASETS.SYNTHETIC.NUM_TEST", "16",
        "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(2, 3)",
        "TEST.EVAL_PERIOD", "4", "DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False"]


def run(cmd, cwd, env=None, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, \
        f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def third_party_site_dirs():
    """The site directories this interpreter's third-party packages come from, without this
    checkout's editable install of resnet_backbone."""
    here = sysconfig.get_paths()["purelib"]
    dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    return [d for d in dirs if d != here] or [here]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_trains_and_predicts(tmp_path):
    # the checkout's files (tracked, and new ones not ignored) in a folder of their own: the
    # build leaves nothing in the checkout, and nothing stale of it (build/, *.egg-info) is built
    source, dist = tmp_path / "source", tmp_path / "dist"
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # the sdist, then the wheel built from the sdist (what pip does with an sdist);
    # --no-isolation: the build backend (setuptools) of the test environment, no download
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source], cwd=tmp_path)
    version = resnet_backbone.__version__
    wheel = dist / f"resnet_backbone-{version}-py3-none-any.whl"
    sdist = dist / f"resnet_backbone-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("resnet_backbone/py.typed", "resnet_backbone/configs/detection/Demo-Shapes-R18-C4.yaml",
                     "resnet_backbone/configs/classification/cifar10/resnet110.yaml",
                     f"resnet_backbone-{version}.dist-info/entry_points.txt"):
        assert required in names, required
    assert any(n.endswith("dist-info/licenses/LICENSE") or n.endswith("dist-info/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"resnet_backbone-{version}.dist-info/METADATA").decode()
    assert "Apache-2.0" in metadata and "Requires-Python: >=3.9" in metadata
    with tarfile.open(sdist) as tar:
        assert f"resnet_backbone-{version}/LICENSE" in tar.getnames()

    venv = tmp_path / "venv"
    # without pip and setuptools of its own: the bundled setuptools (65 on Python 3.11) would
    # shadow the environment's and fail torch's requirement (setuptools>=77); the environment's
    # pip installs into this venv
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=tmp_path).stdout.strip()
    Path(site, "test_environment_packages.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in third_party_site_dirs()))
    run([py, "-m", "pip", "install", "--no-index", "--no-cache-dir", wheel], cwd=tmp_path)
    found = run([py, "-c", "import resnet_backbone; print(resnet_backbone.__file__)"],
                cwd=tmp_path).stdout.strip()
    assert found.startswith(str(venv)), found

    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": str(TOOL_THREADS)}
    work = tmp_path / "user"  # a user's folder: no checkout, no configs/ beside it
    work.mkdir()
    run([venv / "bin" / "resnet-train-cls", *TINY, "OUTPUT_DIR", "run"], cwd=work, env=env)
    assert (work / "run" / "model_final.pth").is_file()
    images = work / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    run([venv / "bin" / "resnet-predict-cls", "images", "--weights", "run/model_final.pth",
         "--output", "predictions.json", "--no-progress"], cwd=work, env=env)
    predictions = json.loads((work / "predictions.json").read_text())["results"]
    assert sorted(Path(p["file"]).name for p in predictions) == ["0.png", "1.png", "2.png"]
    # the synthetic set's class names, from the checkpoint
    assert all(p["topk"][0]["class_name"].startswith("class") for p in predictions), predictions

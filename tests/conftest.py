"""Shared fixtures: tiny synthetic datasets in the real formats, made once per test session."""
import atexit
import os
import shutil
import tempfile

import pytest
import torch

from resnet_backbone.data.synthetic import write_shapes_coco, write_shapes_voc

from helpers import TOOL_THREADS

#: In-process tests run on a test process's share of the cores (helpers.TOOL_THREADS: 2, or 1
#: in each of pytest-xdist's two workers).
torch.set_num_threads(TOOL_THREADS)

#: Session fixtures that train a model (tests/cli/conftest.py): every test that uses one runs in
#: the same xdist worker (``--dist loadgroup``), so that each is trained once per suite, not once
#: per worker.
SHARED_TRAINING_FIXTURES = ("short_demo", "runs", "two_seeds")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        shared = [name for name in SHARED_TRAINING_FIXTURES if name in item.fixturenames]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


#: The dataset checks cache their verdicts under $XDG_CACHE_HOME: the tests' own folder (the
#: tools they start inherit it), not the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="resnet_backbone_tests_cache_")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


@pytest.fixture(scope="session")
def shapes_coco(tmp_path_factory):
    """(json_file, image_root) of 8 small COCO-format images with 3 shape classes."""
    return write_shapes_coco(tmp_path_factory.mktemp("shapes_coco"), 8, image_size=(128, 160),
                             num_classes=3, seed=0)


@pytest.fixture(scope="session")
def shapes_voc(tmp_path_factory):
    """A VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/test.txt), 6 images."""
    return write_shapes_voc(tmp_path_factory.mktemp("shapes_voc") / "VOC2007", 6, split="test",
                            image_size=(128, 160), num_classes=3, seed=1)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: with small inputs on a shared machine, one thread is
    several times faster than two (no parallel region waits for a busy sibling core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

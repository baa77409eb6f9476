"""resnet_backbone: the networks of "Deep Residual Learning for Image Recognition" (He et al.,
CVPR 2016) as PyTorch classifiers and Detectron2 backbones."""
from pathlib import Path

from setuptools import find_packages, setup


def read_version() -> str:
    init = Path(__file__).parent / "resnet_backbone" / "__init__.py"
    for line in init.read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("__version__ not found in resnet_backbone/__init__.py")


setup(
    name="resnet_backbone",
    version=read_version(),
    description="The ResNet paper's networks (He et al., CVPR 2016) as classifiers and Detectron2 backbones",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["resnet_backbone", "resnet_backbone.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        # Not on PyPI: install it with scripts/install_detectron2.py or from source (README).
        "detectron2",
        "fvcore",
        "pycocotools",
        "numpy",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "tabulate",
        "pyyaml",
    ],
    extras_require={"test": ["pytest"]},
)

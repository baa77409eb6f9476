"""resnet_backbone: the networks of "Deep Residual Learning for Image Recognition" (He et al.,
CVPR 2016) as PyTorch classifiers and Detectron2 backbones.

Three layers (README, "Repository layout"): the core (networks, weights, checkpoints, fast paths)
and the benchmarks need torch, torchvision and fvcore only; ``[classification]`` adds what
``resnet-train-cls`` needs; the detection layer (``resnet_backbone.detection``,
``resnet-train-det``) needs detectron2, which is not on PyPI: install it from source or with
``scripts/install_detectron2.py``, then the ``[detection]`` extra.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

TOOLS = ["train_cls", "train_det", "benchmark", "analyze_model", "convert_weights",
         "export_backbone", "export_model", "plot_curves", "plot_responses", "visualize_det",
         "run_seeds", "aggregate_runs", "predict_det", "predict_cls", "make_shards"]


def read_version() -> str:
    for line in (HERE / "resnet_backbone" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("__version__ not found in resnet_backbone/__init__.py")


setup(
    name="resnet_backbone",
    version=read_version(),
    description="The ResNet paper's networks (He et al., CVPR 2016) as classifiers and Detectron2 backbones",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    # configs/ (the paper's recipes, the demos') ships inside the package as resnet_backbone.configs
    packages=find_packages(include=["resnet_backbone", "resnet_backbone.*"]) + ["resnet_backbone.configs"],
    package_dir={"resnet_backbone.configs": "configs"},
    package_data={"resnet_backbone": ["py.typed"],
                  "resnet_backbone.configs": ["*/*.yaml", "*/*/*.yaml", "*/*.py",
                                              "detection/common/*.py", "detection/common/*/*.py"]},
    python_requires=">=3.9",
    license="Apache-2.0",  # as detectron2 and timm; the text: LICENSE
    license_files=["LICENSE"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Typing :: Typed",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    install_requires=["torch>=2.1", "torchvision>=0.16", "fvcore", "numpy", "pillow", "pyyaml",
                      "tabulate"],
    extras_require={
        "classification": ["tensorboard", "tqdm", "matplotlib", "webdataset"],
        # + detectron2 v0.6 or main (not on PyPI; README "Installation and environment")
        "detection": ["pycocotools", "matplotlib"],
        # export to ONNX and serve with ONNX Runtime (tools/export_model.py, benchmark rows)
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "test": ["pytest", "tensorboard", "tqdm", "matplotlib", "pycocotools", "webdataset"],
    },
    entry_points={"console_scripts": [
        f"resnet-{tool.replace('_', '-')}=resnet_backbone.cli.{tool}:main" for tool in TOOLS]},
)

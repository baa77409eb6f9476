"""The config files of the paper's recipes and of the demos, shipped inside the package (the
repository's ``configs/``, installed as ``resnet_backbone.configs``), so a non-editable install
has them too.

    >>> get_config_file("detection/Demo-Shapes-R18-C4.yaml")   # an existing path
    >>> get_config_file("detection/faster_rcnn_R_101_C4_voc0712.py")   # a LazyConfig

LazyConfig (``.py``) files are loaded by path with ``detectron2.config.LazyConfig.load`` (their
relative imports of ``detection/common/`` need it), never imported as modules.
"""
from importlib import resources
from pathlib import Path


def is_config_file(relative: Path) -> bool:
    """A config to run: a YAML, or a LazyConfig ``.py`` file (not ``__init__.py`` nor the
    pieces under a ``common/`` folder that the LazyConfigs import)."""
    if relative.suffix == ".yaml":
        return True
    return (relative.suffix == ".py" and relative.name != "__init__.py"
            and "common" not in relative.parts and "__pycache__" not in relative.parts)


def get_config_file(relative_path: str) -> str:
    """The path of ``configs/<relative_path>``; FileNotFoundError listing what exists if absent."""
    root = Path(str(resources.files("resnet_backbone.configs")))
    path = root / relative_path
    if not path.is_file():
        available = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                           if is_config_file(p.relative_to(root)))
        raise FileNotFoundError(f"No config {relative_path!r} in {root}; available: "
                                f"{', '.join(available)}")
    return str(path)

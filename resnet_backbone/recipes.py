"""The config files of the paper's recipes and of the demos, shipped inside the package (the
repository's ``configs/``, installed as ``resnet_backbone.configs``), so a non-editable install
has them too.

    >>> get_config_file("detection/Demo-Shapes-R18-C4.yaml")   # an existing path
"""
from importlib import resources
from pathlib import Path


def get_config_file(relative_path: str) -> str:
    """The path of ``configs/<relative_path>``; FileNotFoundError listing what exists if absent."""
    root = Path(str(resources.files("resnet_backbone.configs")))
    path = root / relative_path
    if not path.is_file():
        available = sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml"))
        raise FileNotFoundError(f"No config {relative_path!r} in {root}; available: "
                                f"{', '.join(available)}")
    return str(path)

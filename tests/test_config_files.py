"""Config-file mistakes are one line, ``error: ...``, and exit status 2 in both training tools
(``resnet_backbone.config_files``), before any training or dataset work: each case runs the
tool in this process and takes a fraction of a second.

YAML cases run through ``train_cls`` (fvcore) and ``train_det`` (detectron2's YAML path); the
LazyConfig (``.py``) cases through ``train_det``. Every YAML shipped in ``configs/`` passes the
check, so it rejects nothing that loads."""
from pathlib import Path

import pytest

from resnet_backbone.cli import train_cls, train_det
from resnet_backbone.config_files import ConfigFileError, check_config_file

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# Each case: (files to write {name: text}, the path given to the tool, text the line must hold).
YAML_CASES = {
    "syntax_error": ({"c.yaml": "SOLVER:\n  STEPS: [1, 2\n  GAMMA: 0.1\n"}, "c.yaml",
                     ["c.yaml line 3", "not valid YAML"]),
    "tab_indentation": ({"c.yaml": "SOLVER:\n  BASE_LR: 0.1\n\tGAMMA: 0.1\n"}, "c.yaml",
                        ["c.yaml line 3, column 1", "indent with spaces, not tabs"]),
    "empty_file": ({"c.yaml": ""}, "c.yaml", ["c.yaml is empty"]),
    "top_level_list": ({"c.yaml": "- SOLVER:\n    BASE_LR: 0.1\n"}, "c.yaml",
                       ["c.yaml", "top level is a list, not a mapping"]),
    "top_level_scalar": ({"c.yaml": "resnet20\n"}, "c.yaml",
                         ["c.yaml", "top level is a single value (str), not a mapping"]),
    "base_cycle": ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, "a.yaml",
                   ["is a cycle", "a.yaml -> ", "b.yaml -> ", "remove one of these _BASE_"]),
    "base_is_itself": ({"c.yaml": "_BASE_: c.yaml\nSEED: 1\n"}, "c.yaml",
                       ["c.yaml", "is this file itself"]),
    "missing_base": ({"c.yaml": "_BASE_: ../nowhere/base.yaml\n"}, "c.yaml",
                     ["c.yaml", "nowhere/base.yaml does not exist", "fix the path"]),
    "missing_file": ({}, "missing.yaml", ["missing.yaml does not exist"]),
    "folder": ({}, ".", ["is a folder, not a file"]),
}
LAZY_CASES = {
    "python_syntax_error": ({"c.py": "model = dict(\n    depth=101,\noptimizer = 1\n"}, "c.py",
                            ["LazyConfig", "c.py line ", "Python syntax error"]),
    "raises_while_running": ({"c.py": "model = dict(depth=101)\ntrain = dict(lr=undefined_lr)\n"},
                             "c.py", ["LazyConfig", "c.py line 2",
                                      "NameError: name 'undefined_lr' is not defined"]),
}
TOOLS = {"train_cls": train_cls, "train_det": train_det}


def _run_case(tool, tmp_path, capsys, files, given, expected):
    for name, text in files.items():
        _write(tmp_path, name, text)
    path, out = tmp_path / given, tmp_path / "out"
    # where a run would write, were the mistake missed (never the repository's ./output)
    opts = [f"train.output_dir={out}"] if given.endswith(".py") else ["OUTPUT_DIR", str(out)]
    rc = tool.main(["--config-file", str(path), *opts])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert str(path) in lines[0] or path.name in lines[0], err
    for text in expected:
        assert text in lines[0], (text, err)
    assert not out.exists(), "stopped before the output folder was made"


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_config_mistake_is_one_line(tool, case, tmp_path, capsys):
    _run_case(TOOLS[tool], tmp_path, capsys, *YAML_CASES[case])


@pytest.mark.parametrize("case", sorted(LAZY_CASES))
def test_lazy_config_mistake_is_one_line(case, tmp_path, capsys):
    _run_case(train_det, tmp_path, capsys, *LAZY_CASES[case])


def test_lazy_error_keeps_the_original_as_cause(tmp_path):
    from resnet_backbone.detection.lazy import load_config

    path = _write(tmp_path, "c.py", "from .common import nothing_here\n")
    with pytest.raises(ConfigFileError, match=r"c\.py line 1: ImportError") as e:
        load_config(str(path))
    assert isinstance(e.value.__cause__, ImportError)


def test_base_chain_as_fvcore_reads_it(tmp_path, monkeypatch):
    """Bases relative to the file naming them, a list of bases, the same base twice (not a
    cycle), ``~``; the files read, the given one first."""
    (tmp_path / "sub").mkdir()
    common = _write(tmp_path, "common.yaml", "SEED: 1\n")
    _write(tmp_path, "sub/left.yaml", "_BASE_: ../common.yaml\n")
    _write(tmp_path, "sub/right.yaml", "_BASE_: ../common.yaml\n")
    top = _write(tmp_path, "top.yaml", "_BASE_: [sub/left.yaml, sub/right.yaml]\n")
    assert [Path(p).name for p in check_config_file(str(top))] == [
        "top.yaml", "left.yaml", "common.yaml", "right.yaml", "common.yaml"]
    monkeypatch.setenv("HOME", str(tmp_path))
    home = _write(tmp_path / "sub", "home.yaml", f"_BASE_: ~/{common.name}\n")
    assert check_config_file(str(home)) == [str(home), str(common)]
    with pytest.raises(ConfigFileError, match="it must be the path of another config file"):
        check_config_file(str(_write(tmp_path, "bad_base.yaml", "_BASE_: 3\n")))


def test_yaml_tags_follow_each_loader(tmp_path):
    """detectron2 reads tags such as ``!!python/tuple`` (``allow_unsafe``); fvcore does not."""
    path = _write(tmp_path, "c.yaml", "INPUT:\n  MIN_SIZE_TRAIN: !!python/tuple [128]\n")
    assert check_config_file(str(path), allow_unsafe=True) == [str(path)]
    with pytest.raises(ConfigFileError, match=r"c\.yaml line 2, column 19: .*without tags"):
        check_config_file(str(path))


def test_shipped_configs_pass():
    for path in sorted(CONFIGS.rglob("*.yaml")):
        check_config_file(str(path), allow_unsafe="detection" in path.parts)

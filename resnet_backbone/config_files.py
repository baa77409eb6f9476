"""Config files checked before a trainer reads them, so that a mistake in one is one line that
names the file, the line and the fix (a ``ConfigFileError``, a ``ValueError``: ``error: ...`` and
exit status 2 in the tools) rather than a traceback from yaml, fvcore or detectron2.

``check_config_file`` reads a YAML config and its ``_BASE_`` chain as fvcore's
``CfgNode.load_yaml_with_base`` does (a base is relative to the file naming it, ``~`` expanded,
``http(s)://`` left to fvcore) and stops at a file that is missing or a folder, YAML that does
not parse (tabs named as such), a file that is empty or whose top level is not a ``KEY: VALUE``
mapping, a ``_BASE_`` that is not a path or a list of paths, and a ``_BASE_`` cycle. Only the
files are checked; the keys and values are the config's own business (``merge_from_file``).
``python_config_error`` says the same of a LazyConfig (``.py``) file that does not compile or
raises while it runs. Both trainers use them (``classification.config``, ``detection.config``,
``detection.lazy``); the core knows neither.
"""
import os
import re
import sys
from typing import List, Optional, Sequence

import yaml

BASE_KEY = "_BASE_"
#: How a config looks, for the messages about its shape.
MAPPING_HINT = "a config is KEY: VALUE lines, nested keys indented with spaces"


class ConfigFileError(ValueError):
    """A config file that cannot be read as a config; the message names the file (and the line
    where one is known) and says how to fix it."""


class _AnyTagLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that reads a node with an unknown tag (``!!python/tuple [1, 2]``) as
    the plain value under it, running nothing: detectron2 reads such files with
    ``yaml.unsafe_load``, and only their structure is checked here."""


def _untagged(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_AnyTagLoader.add_constructor(None, _untagged)


def load_yaml_values(text: str):
    """The values of a YAML text, any tag read as the plain value under it (no code runs): for
    comparing config dumps, which may hold detectron2's ``!!python/tuple``."""
    return yaml.load(text, Loader=_AnyTagLoader)


def check_config_path(path: str) -> None:
    """``path`` is an existing file: ``FileNotFoundError`` if nothing is there (the convention
    of the tools), ``ConfigFileError`` if it is a folder."""
    if os.path.isdir(path):
        raise ConfigFileError(f"config file {path} is a folder, not a file; give the path of a "
                              "config file (e.g. one of the files in that folder)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist; check the path (relative "
                                f"paths start at the current folder, {os.getcwd()})")


def _where(path: str, mark: Optional[yaml.Mark]) -> str:
    return f"{path} line {mark.line + 1}, column {mark.column + 1}" if mark else path


def _read_yaml(path: str, allow_unsafe: bool):
    """The YAML document of ``path``; a ``ConfigFileError`` saying where and what if it is not
    one (a tab, a syntax error, an unknown tag when ``allow_unsafe`` is False)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigFileError(f"{path} is not a UTF-8 text file (byte {e.start}: {e.reason}); "
                              "give a YAML config file") from e
    except OSError as e:
        raise ConfigFileError(f"cannot read the config file {path} ({e.strerror or e})") from e
    try:
        return yaml.load(text, Loader=_AnyTagLoader if allow_unsafe else yaml.SafeLoader)
    except yaml.constructor.ConstructorError as e:
        raise ConfigFileError(f"{_where(path, e.problem_mark)}: {e.problem}; config files are "
                              "read with yaml.safe_load, so write plain values (numbers, "
                              "strings, [lists], KEY: VALUE mappings) without tags") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if "'\\t'" in (e.problem or ""):
            lines = text.splitlines()
            line = lines[mark.line] if mark and mark.line < len(lines) else ""
            what = ("a tab in the indentation" if "\t" in line[:len(line) - len(line.lstrip())]
                    else "a tab character")
            raise ConfigFileError(f"{_where(path, mark)}: {what}, which YAML does not allow; "
                                  "indent with spaces, not tabs") from e
        problem = "; ".join(p for p in (e.context, e.problem) if p)
        raise ConfigFileError(f"{_where(path, mark)}: not valid YAML ({problem}); fix the syntax "
                              f"there ({MAPPING_HINT}; lists as [a, b])") from e
    except yaml.YAMLError as e:
        raise ConfigFileError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the "
                              "syntax") from e


def _base_paths(path: str, base) -> List[str]:
    """The files a ``_BASE_`` value names, as fvcore resolves them (``http(s)://`` bases, which
    fvcore downloads, are left out: they are not checked here)."""
    bases = base if isinstance(base, list) else [base]
    if not all(isinstance(b, str) and b for b in bases):
        raise ConfigFileError(f"{path}: {BASE_KEY} is {base!r}; it must be the path of another "
                              "config file (relative to this file's folder) or a list of such "
                              "paths")
    paths = []
    for b in bases:
        if b.startswith(("https://", "http://")):
            continue
        if b.startswith("~"):
            b = os.path.expanduser(b)
        paths.append(b if b.startswith("/") else os.path.join(os.path.dirname(path), b))
    return paths


def check_config_file(path: str, allow_unsafe: bool = False) -> List[str]:
    """Check the YAML config ``path`` and every file of its ``_BASE_`` chain (see the module
    docstring); the files read, ``path`` first. ``allow_unsafe``: tags such as
    ``!!python/tuple`` are allowed (detectron2's ``merge_from_file`` allows them; fvcore's does
    not)."""
    check_config_path(path)
    files: List[str] = []
    _check(path, allow_unsafe, [], files)
    return files


def _check(path: str, allow_unsafe: bool, chain: Sequence[str], files: List[str]) -> None:
    """``path`` and its bases; ``chain``: the files whose ``_BASE_`` led here, outermost first."""
    files.append(path)
    data = _read_yaml(path, allow_unsafe)
    of = f" (a {BASE_KEY} of {chain[-1]})" if chain else ""
    if data is None:
        raise ConfigFileError(f"{path}{of} is empty (or only comments); {MAPPING_HINT}, e.g. "
                              "'SOLVER:' then '  BASE_LR: 0.1'")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise ConfigFileError(f"{path}{of}: the top level is {kind}, not a mapping; {MAPPING_HINT}"
                              ", with no '- ' in front of the top-level keys")
    if BASE_KEY not in data:
        return
    here = list(chain) + [path]
    real = [os.path.realpath(p) for p in here]
    for base in _base_paths(path, data[BASE_KEY]):
        if os.path.realpath(base) in real:
            first = real.index(os.path.realpath(base))
            if first == len(here) - 1:
                raise ConfigFileError(f"{path}: {BASE_KEY} {base} is this file itself; remove it "
                                      "(a _BASE_ names another config file)")
            cycle = " -> ".join(here[first:] + [base])
            raise ConfigFileError(f"{path}: the {BASE_KEY} chain is a cycle ({cycle}); remove "
                                  f"one of these {BASE_KEY} entries")
        if os.path.isdir(base):
            raise ConfigFileError(f"{path}: {BASE_KEY} {base} is a folder, not a config file; fix "
                                  "the path (relative to this file's folder)")
        if not os.path.isfile(base):
            raise ConfigFileError(f"{path}: {BASE_KEY} {base} does not exist; fix the path "
                                  "(relative to this file's folder) or create the file")
        _check(base, allow_unsafe, here, files)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _imported_by(where: str, path: str) -> str:
    """`` (imported by PATH)`` when the LazyConfig file ``where`` is not ``path`` itself."""
    return "" if os.path.realpath(where) == os.path.realpath(path) else f" (imported by {path})"


def _is_config_frame(frame) -> bool:
    """A frame of code run from a file rather than imported as a module (a LazyConfig and the
    files it imports relatively: their globals name no module in ``sys.modules``)."""
    name = frame.f_globals.get("__name__")
    return frame.f_code.co_filename.endswith(".py") and (name is None or name not in sys.modules)


def python_config_error(path: str, error: BaseException) -> ConfigFileError:
    """The ``ConfigFileError`` for a LazyConfig ``path`` that did not load: a ``SyntaxError``
    (the file, or a file it imports, does not compile; detectron2 chains the original) or an
    exception raised while running it, with the file and line where that happened. Raise it
    ``from error``."""
    syntax = error.__cause__ if isinstance(error.__cause__, SyntaxError) else error
    if isinstance(syntax, SyntaxError):
        # detectron2 checks with ast.parse, whose error names no file; its own message does
        named = re.match(r"Config file (.+) has syntax error", str(error))
        where = (syntax.filename if syntax.filename and os.path.isfile(syntax.filename)
                 else named.group(1) if named else path)
        line = f" line {syntax.lineno}" if syntax.lineno else ""
        text = f" ({syntax.text.strip()!r})" if syntax.text and syntax.text.strip() else ""
        return ConfigFileError(f"LazyConfig {where}{line}{_imported_by(where, path)}: Python "
                               f"syntax error: {syntax.msg}{text}; fix the Python there")
    frames, tb = [], error.__traceback__
    while tb is not None:
        if _is_config_frame(tb.tb_frame):
            frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    if frames:
        where, line = frames[-1]
        at = f"{where} line {line}{_imported_by(where, path)}"
    else:
        at = path
    detail = _first_line(error.args[0] if isinstance(error, KeyError) and error.args else error)
    return ConfigFileError(f"LazyConfig {at}: {type(error).__name__}"
                           f"{': ' + detail if detail else ''} (raised while running the file); "
                           "fix the config there")

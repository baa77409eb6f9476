"""The layers and the dependency rule.

The package's import graph, read from the source (every ``import``, inside functions too), has
three layers: the core (``resnet_backbone``'s top-level modules, ``models/``, ``data/``,
``checkpoint/``) imports nothing above it; ``classification/`` and ``detection/`` import only the
core and not each other; the application layer (``cli/``, ``benchmarks/``) may import anything.
No module takes part in an import cycle. A module whose first comment is ``# moved-module alias``
only re-exports a module that moved; it belongs to its target's layer.

Only ``resnet_backbone.detection`` (and the detection tools and benchmark rows) import
detectron2. With detectron2 blocked, every other module imports, and every classifier is created,
trained one step, converted and saved; and ``pip install .`` (not editable) ships a package whose
classification trainer and configs work without detectron2."""
import ast
import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import TOOL_THREADS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "resnet_backbone"
#: The modules that may import detectron2: the plugin and the tools and benchmark rows built on it.
DETECTRON2_MODULES = ("resnet_backbone.detection", "resnet_backbone.cli.train_det",
                      "resnet_backbone.cli.visualize_det", "resnet_backbone.benchmarks.detection")
BLOCK_DETECTRON2 = "import sys; sys.modules['detectron2'] = None  # import detectron2 -> ImportError"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules():
    names = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
    return [n for n in names if not n.startswith(DETECTRON2_MODULES)]


#: Layer of each first-level subpackage; everything else under resnet_backbone/ is the core.
LAYERS = {"classification": "classification", "detection": "detection", "cli": "application",
          "benchmarks": "application"}
#: Which layers each layer may import (itself included).
ALLOWED = {"core": {"core"}, "classification": {"core", "classification"},
           "detection": {"core", "detection"},
           "application": {"core", "classification", "detection", "application"}}
ALIAS_MARKER = "# moved-module alias"


def package_modules(package: Path) -> dict:
    """{module name: path} of every module under ``package`` (a folder with __init__.py)."""
    root = package.parent
    return {module_name(p, root): p for p in sorted(package.rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: dict) -> set:
    """The package modules that module ``name`` imports anywhere in its source (module level,
    functions, ``try`` blocks): ``from a import b`` counts as ``a.b`` when that is a module."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[:len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                          for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:  # `import a.b.c` of a name: its module
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def layer_of(name: str, path: Path, modules: dict) -> str:
    """A module's layer; an alias module (``ALIAS_MARKER``) takes its one target's layer."""
    if ALIAS_MARKER in path.read_text():
        targets = imported_modules(name, path, modules) - {name.rpartition(".")[0]}
        (layer,) = {layer_of(t, modules[t], modules) for t in targets}  # one layer
        return layer
    parts = name.split(".")
    return LAYERS.get(parts[1], "core") if len(parts) > 1 else "core"


def layering_violations(package: Path) -> list:
    """Every upward or sideways edge of ``package``'s import graph, as 'a (layer) -> b (layer)'."""
    modules = package_modules(package)
    found = []
    for name, path in modules.items():
        mine = layer_of(name, path, modules)
        for target in sorted(imported_modules(name, path, modules)):
            theirs = layer_of(target, modules[target], modules)
            if theirs not in ALLOWED[mine]:
                found.append(f"{name} ({mine}) -> {target} ({theirs})")
    return found


def import_cycles(package: Path) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted. An edge
    from a module to a package that contains it (``from .. import x`` resolving to the package's
    __init__) is kept: it runs that __init__, so it can close a cycle too."""
    modules = package_modules(package)
    graph = {n: sorted(imported_modules(n, p, modules)) for n, p in modules.items()}
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return components


def test_no_module_imports_a_layer_above_or_beside_it():
    assert layering_violations(PACKAGE) == []


def test_no_import_cycles():
    assert import_cycles(PACKAGE) == []


def is_alias(path: Path) -> bool:
    return ALIAS_MARKER in path.read_text().splitlines()


def test_moved_module_aliases_are_the_moved_modules():
    """Each alias is its docstring, the marker and either the re-binding of one moved module
    (then, once imported, it is that module: names and monkeypatching reach the real one) or a
    star re-export of the modules its content went to (then it has every public name of each)."""
    aliases = sorted(p for p in PACKAGE.rglob("*.py") if is_alias(p))
    assert len(aliases) == 5, aliases
    for path in aliases:
        body = ast.parse(path.read_text()).body
        assert isinstance(body[0], ast.Expr), path  # the docstring
        imports = [n for n in body[1:] if isinstance(n, ast.ImportFrom)]
        if all(n.names[0].name == "*" for n in imports):  # a re-export of several modules
            assert len(body) == 1 + len(imports), path
            targets = [n.module for n in imports]
            if any(t.startswith(DETECTRON2_MODULES) for t in targets) and \
                    importlib.util.find_spec("detectron2") is None:
                continue
            alias = importlib.import_module(module_name(path))
            for target in map(importlib.import_module, targets):
                public = [n for n in vars(target) if not n.startswith("_")]
                assert all(getattr(alias, n) is getattr(target, n) for n in public), (path, target)
            continue
        assert len(body) == 4, path  # docstring + 3 lines
        moved = body[2]
        assert isinstance(moved, ast.ImportFrom) and moved.names[0].asname == "_moved", path
        target = f"{moved.module}.{moved.names[0].name}"
        if target.startswith(DETECTRON2_MODULES) and importlib.util.find_spec("detectron2") is None:
            continue
        assert importlib.import_module(module_name(path)) is importlib.import_module(target)


def test_the_layering_checks_see_lazy_upward_edges_and_cycles(tmp_path):
    """The two checks above fail on a planted upward import inside a function, on a planted
    sideways import, and on a cycle hidden in a function; and accept an alias module."""
    pkg = tmp_path / "resnet_backbone"
    for rel, text in {
        "__init__.py": "",
        "core.py": "def f():\n    from .cli import tool\n",  # core -> application (a cycle too)
        "classification/__init__.py": "",
        "classification/engine.py": "from ..detection import heads\n",  # sideways
        "detection/__init__.py": "",
        "detection/heads.py": "from . import pyramid\n",
        "detection/pyramid.py": "def f():\n    from .heads import x\n",  # lazy cycle
        "cli/__init__.py": "",
        "cli/tool.py": "from resnet_backbone.core import f\n",
        "old_tool.py": "# moved-module alias\nimport sys\nfrom .cli import tool as _m\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    assert layering_violations(pkg) == [
        "resnet_backbone.classification.engine (classification) -> "
        "resnet_backbone.detection.heads (detection)",
        "resnet_backbone.core (core) -> resnet_backbone.cli.tool (application)"]
    assert sorted(import_cycles(pkg)) == [
        ["resnet_backbone.cli.tool", "resnet_backbone.core"],
        ["resnet_backbone.detection.heads", "resnet_backbone.detection.pyramid"]]


def run_python(code: str, cwd=REPO, env=None, timeout=600):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": str(TOOL_THREADS), **(env or {})})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_only_the_detection_layer_names_detectron2():
    """No ``import detectron2`` (or ``from detectron2``) outside the detection layer's modules."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if module_name(path).startswith(DETECTRON2_MODULES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "detectron2"]
    assert offenders == []


@pytest.mark.slow
def test_core_and_classification_work_with_detectron2_blocked(tmp_path):
    """Every module but the detection layer imports, and every registered classifier is created,
    trained one SGD step, converted to the other layouts and back, saved and loaded safely."""
    out = run_python(f"""
        {BLOCK_DETECTRON2}
        import importlib, torch
        for name in {core_modules()!r}:
            importlib.import_module(name)
        import resnet_backbone as rb
        from resnet_backbone import convert
        from resnet_backbone.checkpoint import load_checkpoint_file, save_checkpoint_atomic
        torch.manual_seed(0)
        for name in rb.list_models():
            spec = rb.model_spec(name)
            model = rb.create_model(name, num_classes=3)
            size = 32 if spec.cifar else 64
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            torch.nn.functional.cross_entropy(model(torch.randn(2, 3, size, size)),
                                              torch.tensor([0, 2])).backward()
            opt.step()
            sd = model.state_dict()
            if spec.family == "vgg16":
                back = convert.torchvision_vgg16_to_paper(convert.paper_to_torchvision_vgg16(sd))
            else:
                back = convert.caffe2_resnet_to_paper(convert.paper_to_caffe2_resnet(sd, fold_bn=False))
                sd = {{k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}}
            assert all(torch.equal(torch.as_tensor(back[k]), sd[k]) for k in sd), name
            path = save_checkpoint_atomic({{"model": model.state_dict()}}, r"{tmp_path}/" + name + ".pth")
            rb.create_model(name, num_classes=3).load_state_dict(load_checkpoint_file(path)["model"])
        loaded = [m for m, v in sys.modules.items() if m.startswith("detectron2") and v is not None]
        assert not loaded, loaded
        print("models", len(rb.list_models()))
    """)
    assert "models 19" in out  # 5 + 2 plain + VGG-16 + 6 CIFAR + 5 CIFAR plain


def test_pip_install_ships_a_working_package_without_detectron2(tmp_path):
    """A non-editable install into a folder: the classification trainer runs its embedded demo
    (shortened) from there with detectron2 blocked, the configs ship as package data, and the
    console scripts exist."""
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--no-compile", "--target", str(target), str(REPO)],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-4000:]
    assert (target / "bin" / "resnet-train-cls").is_file() and (target / "bin" / "resnet-train-det").is_file()
    out = run_python(f"""
        {BLOCK_DETECTRON2}
        import resnet_backbone
        from resnet_backbone.recipes import get_config_file
        from resnet_backbone.cli.train_cls import main
        assert resnet_backbone.__file__.startswith(r"{target}"), resnet_backbone.__file__
        print(get_config_file("detection/Demo-Shapes-R18-C4.yaml"))
        print(get_config_file("classification/cifar10/resnet110.yaml"))
        sys.exit(main(["DATASETS.SYNTHETIC.NUM_TRAIN", "64", "DATASETS.SYNTHETIC.NUM_TEST", "16",
                       "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", "3", "PROGRESS_BAR", "False",
                       "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", r"{tmp_path / 'demo'}"]))
    """, cwd=tmp_path, env={"PYTHONPATH": str(target)})
    config_lines = [line for line in out.splitlines() if line.endswith(".yaml")]
    assert len(config_lines) == 2 and all(line.startswith(str(target)) for line in config_lines)
    assert "val/center: top-1 error" in out and (tmp_path / "demo" / "model_final.pth").is_file()


def test_console_scripts_are_the_tools_mains():
    """One ``resnet-<tool>`` command per ``tools/<tool>.py``, each the same ``main``; one runs."""
    scripts = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")
               if ep.value.startswith("resnet_backbone.")}
    tools = sorted(p.stem for p in (REPO / "tools").glob("*.py"))
    assert sorted(scripts) == [f"resnet-{t.replace('_', '-')}" for t in tools]
    for tool in tools:
        ep = scripts[f"resnet-{tool.replace('_', '-')}"]
        assert ep.value == f"resnet_backbone.cli.{tool}:main"
        assert f"from resnet_backbone.cli.{tool} import main" in (REPO / "tools" / f"{tool}.py").read_text()
    proc = subprocess.run([str(Path(sys.executable).parent / "resnet-train-cls"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--config-file" in proc.stdout, proc.stderr[-2000:]

"""The dependency rule: the core imports nothing above it, ``classification`` and ``detection``
import only the core (never each other), the application layer (``cli``, ``benchmarks``) may
import anything; only ``resnet_backbone.detection`` (and the detection tools and benchmark rows)
import detectron2. With detectron2 blocked, every other module imports, and every classifier is
created, trained one step, converted and saved; and ``pip install .`` (not editable) ships a
package whose classification trainer and configs work without detectron2."""
import ast
import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "resnet_backbone"
#: The modules that may import detectron2: the plugin and the tools and benchmark rows built on it.
DETECTRON2_MODULES = ("resnet_backbone.detection", "resnet_backbone.cli.train_det",
                      "resnet_backbone.cli.visualize_det", "resnet_backbone.benchmarks.detection")
#: The layers above the core (first part of the module name after ``resnet_backbone``).
LAYERS = {"classification": "classification", "detection": "detection", "cli": "application",
          "benchmarks": "application"}
#: What each layer may import besides itself.
ALLOWED = {"core": {"core"}, "classification": {"core"}, "detection": {"core"},
           "application": {"core", "classification", "detection"}}
#: The first comment of a module left at an old path that only re-binds the moved module.
ALIAS_MARKER = "# moved-module alias"
BLOCK_DETECTRON2 = "import sys; sys.modules['detectron2'] = None  # import detectron2 -> ImportError"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules():
    names = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
    return [n for n in names if not n.startswith(DETECTRON2_MODULES)]


def run_python(code: str, cwd=REPO, env=None, timeout=600):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def layer(module: str) -> str:
    parts = module.split(".")
    return LAYERS.get(parts[1], "core") if len(parts) > 1 else "core"


def imported_modules(path: Path):
    """(line, absolute module name) of every ``resnet_backbone`` import of the file, those inside
    functions included; ``from . import x`` counts as importing ``package.x``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if node.module is None:
                yield from ((node.lineno, f"{module}.{a.name}") for a in node.names)
            else:
                yield node.lineno, module


def is_alias(path: Path) -> bool:
    return ALIAS_MARKER in path.read_text().splitlines()


def test_layers_import_only_downwards():
    """core <- classification, detection (not each other) <- cli, benchmarks; the modules left at
    old paths (``# moved-module alias``) are skipped: they only re-bind the moved module."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if is_alias(path):
            continue
        own = layer(module_name(path))
        for line, target in imported_modules(path):
            if target.split(".")[0] != "resnet_backbone":
                continue
            other = layer(target)
            if other != own and other not in ALLOWED[own]:
                offenders.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {target} ({other})")
    assert offenders == [], "\n".join(offenders)


def test_moved_module_aliases_are_the_moved_modules():
    """Each alias is its whole body (docstring, marker, re-binding) and, once imported, is the
    moved module itself (names and monkeypatching reach the real one)."""
    aliases = sorted(p for p in PACKAGE.rglob("*.py") if is_alias(p))
    assert len(aliases) == 5, aliases
    for path in aliases:
        body = ast.parse(path.read_text()).body
        assert len(body) == 4 and isinstance(body[0], ast.Expr), path  # docstring + 3 lines
        moved = body[2]
        assert isinstance(moved, ast.ImportFrom) and moved.names[0].asname == "_moved", path
        target = f"{moved.module}.{moved.names[0].name}"
        if target.startswith(DETECTRON2_MODULES) and importlib.util.find_spec("detectron2") is None:
            continue
        assert importlib.import_module(module_name(path)) is importlib.import_module(target)


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

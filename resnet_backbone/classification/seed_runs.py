"""The paper's "N runs" protocol for a classification recipe: Table 6 reports CIFAR-10 ResNet-110
as "best (mean ± std)" of 5 runs (6.43 %, 6.61 ± 0.16). Three parts:

* planning: one ``train_cls`` command per seed, differing only in ``SEED <k>`` and
  ``OUTPUT_DIR <root>/seed<k>`` (``resnet-run-seeds`` runs them one after another, or prints them
  for a cluster). Each command is ``sys.executable -m resnet_backbone.cli.train_cls --resume ...``:
  a fresh process per seed, so nothing (RNG, cudnn, logging, CUDA memory) leaks from one seed into
  the next, and the printed cluster line is exactly what the sequential mode runs; ``--resume``
  makes a re-run continue an interrupted seed exactly (it starts from scratch when there is no
  checkpoint yet).
* reading: a run's result is the top-1 error of ``model_final.pth`` (the last iteration) that
  ``train_cls`` writes to ``final_results.json`` after training, ``test/<mode>`` when a validation
  split is held out (``DATASETS.VAL_HOLDOUT``), else ``val/<mode>``, which then *is* the test set.
  Never ``model_best.pth``: picking a checkpoint per run would bias best and mean downwards.
* aggregating: best (min), mean and the *sample* standard deviation (n - 1 in the denominator,
  the usual reading of a paper's "± std" over 5 runs) of the finished runs, beside the paper's
  figure for the paper's CIFAR-10 networks (``TABLE6_PAPER_ERR``). Unfinished and missing runs
  are listed and left out of the statistics; runs of different recipes are an error.
"""
import json
import re
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..recipes import get_config_file
from .config import cfg_from_checkpoint, load_cls_cfg

FINAL_RESULTS = "final_results.json"
SEED_FOLDER = re.compile(r"^seed(\d+)$")
#: Config keys that do not change what a run trains: left out when recipes are compared (the
#: seed and output folder differ by design; the dataset may live at another path on each node).
NOT_RECIPE = frozenset({"SEED", "OUTPUT_DIR", "PROGRESS_BAR", "LOG_PERIOD", "DIST_TIMEOUT_S",
                        "DATALOADER.NUM_WORKERS", "DATASETS.ROOT", "MODEL.DEVICE",
                        "SOLVER.CHECKPOINT_PERIOD", "SOLVER.KEEP_LAST", "TEST.IMS_PER_BATCH"})
STD_NAME = "sample std, n - 1"


@dataclass(frozen=True)
class PaperFigure:
    """A test error (%) quoted from the paper: best of ``runs`` runs, with mean and std if given."""
    best: float
    mean: Optional[float] = None
    std: Optional[float] = None
    runs: Optional[int] = None
    source: str = "Table 6"

    def text(self) -> str:
        spread = f" ({self.mean:.2f} ± {self.std:.2f}), best of {self.runs} runs" if self.mean else ""
        return f"{self.source}: {self.best:.2f}{spread}"


#: Table 6 of the paper: CIFAR-10 test error (%) of the option-A ResNets (one number each;
#: ResNet-110 "best (mean ± std)" of 5 runs). The configs' header comments quote the same numbers.
TABLE6_PAPER_ERR = {
    "cifar_resnet20": PaperFigure(8.75), "cifar_resnet32": PaperFigure(7.51),
    "cifar_resnet44": PaperFigure(7.17), "cifar_resnet56": PaperFigure(6.97),
    "cifar_resnet110": PaperFigure(6.43, mean=6.61, std=0.16, runs=5),
    "cifar_resnet1202": PaperFigure(7.93),
}


# -- recipes
def read_config(folder: Path):
    """The config a run was trained with (its ``config.yaml``)."""
    path = Path(folder) / "config.yaml"
    try:
        return cfg_from_checkpoint({"cfg": path.read_text()})
    except (AssertionError, KeyError) as e:
        raise ValueError(f"{path} is not a config of this version of train_cls ({e})") from None


def recipe(cfg) -> Dict[str, object]:
    """A config as flat ``{"SOLVER.MAX_ITER": value}``, without the ``NOT_RECIPE`` keys."""
    flat: Dict[str, object] = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif f"{prefix}{key}" not in NOT_RECIPE:
                flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    walk(cfg, "")
    return flat


def recipe_differences(a, b) -> List[Tuple[str, object, object]]:
    """``(KEY, a_value, b_value)`` for each recipe key where configs ``a`` and ``b`` differ."""
    ra, rb = recipe(a), recipe(b)
    return [(k, ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)]


def describe(differences, limit: int = 3) -> str:
    """``KEY: a vs b; ...`` of the first ``limit`` differences."""
    text = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in differences[:limit])
    return text + (f"; {len(differences) - limit} more" if len(differences) > limit else "")


def paper_figure(cfg) -> Tuple[Optional[PaperFigure], List[str]]:
    """The paper's figure for a run's recipe (None if it is not one of Table 6's CIFAR-10
    networks), and the keys where the run differs from the shipped paper config of that network
    (none: the paper's recipe; otherwise the figure is for reference only)."""
    figure = TABLE6_PAPER_ERR.get(cfg.MODEL.NAME)
    if figure is None or cfg.DATASETS.NAME != "cifar10" or cfg.MODEL.SHORTCUT not in ("", "A"):
        return None, []
    name = cfg.MODEL.NAME[len("cifar_"):]
    paper_cfg = load_cls_cfg(get_config_file(f"classification/cifar10/{name}.yaml"), [])
    return figure, [key for key, _, _ in recipe_differences(cfg, paper_cfg)]


# -- planning
@dataclass
class SeedRun:
    seed: int
    folder: Path
    command: List[str]

    def shell_line(self) -> str:
        return shlex.join(self.command)


def check_overrides(opts: Sequence[str]) -> None:
    """The overrides for every seed: not SEED nor OUTPUT_DIR (set per seed), no stray --option."""
    for i, opt in enumerate(map(str, opts)):
        if opt.startswith("--"):
            raise ValueError(f"{opt} after the KEY VALUE overrides; put every --option first")
        if i % 2 == 0 and opt in ("SEED", "OUTPUT_DIR"):
            raise ValueError(f"{opt} is set per seed; remove it from the overrides (choose seeds "
                             "with --seeds or --num-seeds, the folder with --output-root)")


def plan_seed_runs(config_file: str, opts: Sequence[str], seeds: Iterable[int], output_root,
                   num_gpus: int = 1) -> List[SeedRun]:
    """One ``train_cls`` command per seed (``opts`` passed to each, then SEED and OUTPUT_DIR)."""
    check_overrides(opts)
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct integers >= 0; got {seeds}")
    head = [sys.executable, "-m", "resnet_backbone.cli.train_cls", "--resume"]
    head += ["--num-gpus", str(num_gpus)] if num_gpus != 1 else []
    head += ["--config-file", str(config_file)] if config_file else []
    runs = []
    for seed in seeds:
        folder = Path(output_root) / f"seed{seed}"
        runs.append(SeedRun(seed, folder, head + [str(o) for o in opts]
                            + ["SEED", str(seed), "OUTPUT_DIR", str(folder)]))
    return runs


def is_finished(folder: Path) -> bool:
    """``train_cls`` wrote the final result (``final_results.json`` of ``model_final.pth``)."""
    return (Path(folder) / FINAL_RESULTS).is_file()


# -- reading and aggregating
@dataclass
class RunResult:
    folder: str
    seed: Optional[int]
    status: str  # finished | unfinished | missing
    top1_err: Optional[float] = None
    top5_err: Optional[float] = None
    key: str = ""  # the entry of final_results.json read, e.g. "val/center"
    note: str = ""


def find_run_folders(paths: Sequence[str], seeds: Optional[Sequence[int]] = None) -> List[Path]:
    """Run folders from OUTPUT_DIR folders and roots holding ``seed<k>/`` subfolders (a root is
    one even if a run of its own wrote there: ``resnet-run-seeds`` defaults to the config's
    OUTPUT_DIR); with ``seeds``, a root's absent ``seed<k>`` folders are included as missing."""
    folders: Dict[Path, Path] = {}  # resolved -> as given: a folder named twice counts once
    for p in map(Path, paths):
        subs = {int(m.group(1)): d for d in (p.iterdir() if p.is_dir() else [])
                if d.is_dir() and (m := SEED_FOLDER.match(d.name))}
        if subs or (seeds and p.is_dir() and not (p / "config.yaml").is_file()):  # a root
            subs.update({k: p / f"seed{k}" for k in seeds or [] if k not in subs})
            found = [subs[k] for k in sorted(subs)]
        else:
            found = [p]
        for f in found:
            folders.setdefault(f.resolve(), f)
    if not any((f / "config.yaml").is_file() for f in folders.values()):
        raise ValueError(f"no runs found in {', '.join(map(str, paths))}: give OUTPUT_DIR folders "
                         "of train_cls (with config.yaml) or a root holding seed<k>/ folders")
    return list(folders.values())


def read_run(folder: Path, mode: Optional[str] = None) -> Tuple[RunResult, Optional[object]]:
    """A run's final test error (``mode``: a TEST.FINAL_MODES entry, default the run's first)
    and its config (None when the folder holds no run)."""
    folder = Path(folder)
    match = SEED_FOLDER.match(folder.name)
    if not (folder / "config.yaml").is_file():
        why = "no such folder" if not folder.exists() else "no config.yaml: not started"
        return RunResult(str(folder), int(match.group(1)) if match else None, "missing",
                         note=why), None
    cfg = read_config(folder)
    run = RunResult(str(folder), int(cfg.SEED), "unfinished")
    if not is_finished(folder):
        run.note = f"no {FINAL_RESULTS} yet: running, interrupted or failed"
        return run, cfg
    try:
        results = json.loads((folder / FINAL_RESULTS).read_text())
    except (OSError, ValueError) as e:
        run.note = f"{FINAL_RESULTS} unreadable ({e})"
        return run, cfg
    mode = mode or cfg.TEST.FINAL_MODES[0]
    key = next((k for k in (f"test/{mode}", f"val/{mode}") if k in results), None)
    if key is None:
        modes = sorted({k.split("/", 1)[-1] for k in results})
        raise ValueError(f"{folder / FINAL_RESULTS} has no result of mode {mode!r}; pick --mode "
                         f"from {', '.join(modes)}")
    run.status, run.key = "finished", key
    run.top1_err, run.top5_err = results[key]["top1_err"], results[key]["top5_err"]
    return run, cfg


@dataclass
class Aggregate:
    runs: List[RunResult]
    model: str = ""
    n: int = 0
    best: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    std_kind: str = STD_NAME
    paper: Optional[PaperFigure] = None
    paper_differences: List[str] = field(default_factory=list)

    @property
    def excluded(self) -> List[RunResult]:
        return [r for r in self.runs if r.status != "finished"]

    def to_json(self) -> Dict:
        return asdict(self)


def aggregate(folders: Sequence[Path], mode: Optional[str] = None) -> Aggregate:
    """Read every folder; check they are one recipe with distinct seeds; the statistics of the
    finished runs' final top-1 errors (best = min, mean, sample std; std None below 2 runs)."""
    runs, cfgs = zip(*(read_run(f, mode) for f in folders)) if folders else ((), ())
    started = [(r, c) for r, c in zip(runs, cfgs) if c is not None]
    if not started:
        raise ValueError(f"no runs found ({len(folders)} folders, none with a config.yaml)")
    (first_run, first_cfg), seeds = started[0], {}
    for run, cfg in started:
        diff = recipe_differences(first_cfg, cfg)
        if diff:
            raise ValueError(f"{first_run.folder} and {run.folder} are runs of different recipes "
                             f"({describe(diff)}); aggregate the runs of one recipe only")
        if run.seed in seeds:
            raise ValueError(f"{seeds[run.seed]} and {run.folder} both ran SEED {run.seed}; "
                             "aggregate runs of distinct seeds")
        seeds[run.seed] = run.folder
    errs = np.array([r.top1_err for r in runs if r.status == "finished"], dtype=np.float64)
    agg = Aggregate(list(runs), model=first_cfg.MODEL.NAME, n=len(errs))
    if len(errs):
        agg.best, agg.mean = float(errs.min()), float(errs.mean())
    if len(errs) > 1:
        agg.std = float(errs.std(ddof=1))
    agg.paper, agg.paper_differences = paper_figure(first_cfg)
    return agg


def _num(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown_table(agg: Aggregate) -> str:
    """Per-run rows, then the summary row (with the paper's figure when there is one)."""
    keys = sorted({r.key for r in agg.runs if r.key}) or ["-"]
    lines = [f"Final top-1 test error (%) of model_final.pth, {agg.model} "
             f"(final_results.json {', '.join(keys)})", "",
             "| run | seed | status | top-1 error (%) |", "|---|---:|---|---:|"]
    for r in agg.runs:
        status = r.status + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.folder} | {'' if r.seed is None else r.seed} | {status} | "
                     f"{_num(r.top1_err)} |")
    paper = agg.paper.text() if agg.paper else "–"
    lines += ["", f"| runs | best (min) | mean ± std ({agg.std_kind}) | paper |",
              "|---:|---:|---:|---|",
              f"| {agg.n} of {len(agg.runs)} | {_num(agg.best)} | {_num(agg.mean)} ± "
              f"{_num(agg.std)} | {paper} |"]
    return "\n".join(lines)


def warnings_of(agg: Aggregate) -> List[str]:
    """What a reader of the table must know: excluded runs, a recipe that is not the paper's."""
    out = []
    if agg.excluded:
        out.append(f"{len(agg.excluded)} of {len(agg.runs)} runs excluded from the statistics "
                   f"(not finished): {', '.join(r.folder for r in agg.excluded)}")
    if agg.paper and agg.paper_differences:
        out.append(f"the runs differ from the paper's {agg.model} recipe (its config in "
                   f"configs/classification/cifar10/) in {', '.join(agg.paper_differences)}: "
                   "the paper's figure is for reference only")
    return out

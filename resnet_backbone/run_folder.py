"""An output folder belongs to one training run: claimed, locked, never overwritten by accident.

Both training tools call ``claim_output_dir`` (process 0, before anything is written there):

* **A lock** (``OUTPUT_DIR/.run.lock``, ``fcntl.lockf``: POSIX record locks, which NFS v4 and
  Lustre honour) held until the process ends. A second run into the same folder stops with one
  line naming the first (pid, host, start time). The kernel releases the lock when its process
  dies, however it dies, so a crashed run leaves no stale lock: the next claim just takes it.
* **No silent overwrite.** A folder that holds a started or finished run (checkpoints,
  ``last_checkpoint``, metrics) is continued with ``--resume`` or started over with
  ``--overwrite`` (its run files are deleted first, so no checkpoint of the old run can be
  mistaken for one of the new); without either it is an error. detectron2's ``train_net.py``
  overwrites such a folder silently (``resume=False`` starts at iteration 0 and writes over the
  old checkpoints); timm's ``train.py`` never reuses one (it makes ``NAME-1``, ``NAME-2``, ...).
  We refuse and name both ways out: the user's intent is not guessable, and a new folder per
  run would break ``--resume`` by folder name.
* **Interrupted writes cleaned**: the hidden ``.NAME.XXXX.tmp`` files that an atomic write
  (``resnet_backbone.checkpoint.atomic``) leaves when its process is killed mid-write are
  removed (safe: the lock says no other run writes here).
* ``claim_run`` (what the tools call: the claim, then ``config.yaml``) with
  ``check_resume_config``: a resumed run whose config changed a setting that the checkpoint's
  schedule or weights depend on (the batch size, the network) is refused in one line; other
  changes are listed (``changed_settings``).

``--eval-only`` takes no lock and refuses nothing: evaluating a checkpoint of a run that is still
training in that folder is a normal thing to do, and it writes no run file.
"""
import fcntl
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import yaml

from .checkpoint.atomic import write_text_atomic
from .config_files import load_yaml_values

logger = logging.getLogger("resnet_backbone")

LOCK_NAME = ".run.lock"
#: What a started or finished training run leaves in its folder (both tools). ``--overwrite``
#: deletes these and nothing else (a demo's generated data, a user's notes stay).
RUN_FILES = re.compile(
    r"^(model_\d{7}\.pth|model_final\.pth|model_best\.pth|last_checkpoint|metrics\.(json|csv)"
    r"|final_results\.json|results\.json|eval_results\.json|pixel_mean\.pth"
    r"|events\.out\.tfevents\..*|tensorboard|inference)$")
#: Files whose presence means a run started (config.yaml and log.txt alone do not: a run that
#: stopped at a config error writes them).
STARTED = re.compile(r"^(model_\d{7}\.pth|model_final\.pth|last_checkpoint|metrics\.(json|csv))$")
#: An atomic write's temporary file (``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")``).
INTERRUPTED_WRITE = re.compile(r"^\.[^/]+\.[A-Za-z0-9_]{8}\.tmp$")

#: The open lock files of this process, by folder (kept open: closing one releases its lock).
_HELD: Dict[str, int] = {}


class OutputDirError(ValueError):
    """The output folder cannot be used by this run (in use, or holding another run)."""


def run_files(output_dir: str, pattern: re.Pattern = RUN_FILES) -> List[str]:
    """The names in ``output_dir`` that ``pattern`` matches, sorted."""
    try:
        return sorted(n for n in os.listdir(output_dir) if pattern.match(n))
    except FileNotFoundError:
        return []


def _lock(output_dir: str) -> None:
    """Take ``output_dir``'s lock for the life of this process, or ``OutputDirError``."""
    key = os.path.realpath(output_dir)
    if key in _HELD:
        return
    path = os.path.join(output_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir} is in use by another run ({holder}); wait for it to end, "
            "or give this run another OUTPUT_DIR") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (f"pid {os.getpid()} on {socket.gethostname()}, started "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode(), 0)
    _HELD[key] = fd


def release_output_dir(output_dir: str) -> None:
    """Give the lock back before the process ends (a notebook or test running several jobs)."""
    fd = _HELD.pop(os.path.realpath(output_dir), None)
    if fd is not None:
        os.close(fd)


def _remove_interrupted_writes(output_dir: str) -> List[str]:
    removed = []
    for name in run_files(output_dir, INTERRUPTED_WRITE):
        try:
            os.unlink(os.path.join(output_dir, name))
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def claim_output_dir(output_dir: str, *, resume: bool, overwrite: bool = False,
                     eval_only: bool = False) -> None:
    """Make ``output_dir`` this run's (see the module docstring); call it in process 0 before
    the run writes anything there. ``OutputDirError`` when another run holds it, or when it
    holds a run and neither ``resume`` nor ``overwrite`` is set."""
    if eval_only:
        return
    if resume and overwrite:
        raise OutputDirError("--resume continues the run in OUTPUT_DIR and --overwrite deletes it; "
                             "give one of them")
    os.makedirs(output_dir, exist_ok=True)
    _lock(output_dir)
    started = run_files(output_dir, STARTED)
    if started and not resume:
        if not overwrite:
            more = f" and {len(started) - 4} more" if len(started) > 4 else ""
            shown = ", ".join(started[:4]) + more
            raise OutputDirError(
                f"OUTPUT_DIR {output_dir} already holds a training run ({shown}); continue it "
                "with --resume, start it over with --overwrite (its checkpoints and metrics are "
                "deleted), or give another OUTPUT_DIR")
        old = run_files(output_dir)
        for name in old:
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        logger.warning("--overwrite: deleted the previous run's files in %s: %s", output_dir,
                       ", ".join(old))
    removed = _remove_interrupted_writes(output_dir)
    if removed:
        logger.warning("removed %d unfinished file(s) of a write that was interrupted in %s: %s",
                       len(removed), output_dir, ", ".join(removed))


# -- what a resumed run may change ------------------------------------------------------------


def _flatten(node, prefix: str = "") -> Dict[str, object]:
    if isinstance(node, dict):
        out: Dict[str, object] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def changed_settings(old_yaml: str, new_yaml: str) -> List[Tuple[str, object, object]]:
    """``(dotted key, old value, new value)`` for every setting that both config dumps hold and
    that differs (a key only one of them has, e.g. one a newer version added, is no change)."""
    old = _flatten(load_yaml_values(old_yaml) or {})
    new = _flatten(load_yaml_values(new_yaml) or {})
    return [(k, old[k], new[k]) for k in sorted(set(old) & set(new)) if old[k] != new[k]]


def _covered(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def check_resume_config(output_dir: str, old_yaml: str, new_yaml: str, *, fixed: Sequence[str],
                        free: Sequence[str] = (), weights_key: str = "MODEL.WEIGHTS") -> None:
    """A resumed run's config (``new_yaml``) against the one its folder was trained with
    (``old_yaml``): settings under the ``fixed`` prefixes (the network, the batch size: what the
    checkpoint's weights, data order and schedule depend on) must not change, except those
    under ``free`` (e.g. the device); ``OutputDirError`` names each change and the ways out.
    Other changes are logged."""
    changes = changed_settings(old_yaml, new_yaml)
    refused = [c for c in changes if _covered(c[0], fixed) and not _covered(c[0], free)]
    if refused:
        shown = "; ".join(f"{k}: {old!r} in the run, {new!r} now" for k, old, new in refused[:4])
        more = f" and {len(refused) - 4} more" if len(refused) > 4 else ""
        raise OutputDirError(
            f"--resume into {output_dir} with settings its checkpoint cannot continue ({shown}"
            f"{more}; the run's are in its config.yaml): set them back, or start a new run in "
            f"another OUTPUT_DIR ({weights_key} {os.path.join(output_dir, 'model_final.pth')} "
            "starts from its weights)")
    if changes:
        logger.warning("--resume with changed settings: %s",
                       "; ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes))


def claim_run(output_dir: str, *, resume: bool, overwrite: bool, eval_only: bool,
              write_config: Callable[[str], object], fixed: Sequence[str],
              free: Sequence[str] = (), weights_key: str = "MODEL.WEIGHTS") -> None:
    """Process 0 of a training tool, before the run writes anything: ``claim_output_dir``, then
    ``write_config(path of config.yaml)``; resuming, the new config checked against the run's
    (``check_resume_config``; refused, the run's config.yaml is put back)."""
    claim_output_dir(output_dir, resume=resume, overwrite=overwrite, eval_only=eval_only)
    path = os.path.join(output_dir, "config.yaml")
    old = Path(path).read_text() if resume and not eval_only and os.path.isfile(path) else None
    write_config(path)
    if old is None:
        return
    try:
        check_resume_config(output_dir, old, Path(path).read_text(), fixed=fixed, free=free,
                            weights_key=weights_key)
    except OutputDirError:
        write_text_atomic(path, old)
        raise
    except (OSError, yaml.YAMLError) as e:
        logger.warning("--resume: cannot compare the config with the run's (%s)", e)


__all__ = ["OutputDirError", "claim_run", "claim_output_dir", "release_output_dir",
           "check_resume_config", "changed_settings", "run_files", "RUN_FILES", "LOCK_NAME"]

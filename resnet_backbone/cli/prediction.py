"""What ``resnet-predict-cls`` and ``resnet-predict-det`` share: the loop over a user's images.

Images are read (``resnet_backbone.data.image_io``) in a background thread while the model runs
on the previous batch; a file that cannot be read is reported on stderr, by name and reason,
and skipped; a progress bar (tqdm, on stderr) shows the images done; at the end one line gives
the images per second, and the skipped files are summarised. The command's exit status is then
``SKIPPED_EXIT`` (1) when any file was skipped: the results written are complete for the others.
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Sequence, Tuple

import numpy as np

from ..data.image_io import ImageReadError, read_image_file

#: Exit status of a prediction command that skipped unreadable files (2 is bad input).
SKIPPED_EXIT = 1
#: Skipped files named in the final summary (each was also reported when it was skipped).
SHOWN = 10


@dataclass
class PredictionRun:
    """What one pass over the images did."""

    done: int = 0
    seconds: float = 0.0
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The closing line(s): throughput, then what was skipped."""
        text = (f"{self.done} image(s) in {self.seconds:.1f} s ({self.images_per_second:.2f} "
                "images/s, reading included)")
        if self.skipped:
            names = "; ".join(f"{p}: {why}" for p, why in self.skipped[:SHOWN])
            more = f"; and {len(self.skipped) - SHOWN} more" if len(self.skipped) > SHOWN else ""
            text += f"\nskipped {len(self.skipped)} unreadable file(s): {names}{more}"
        return text

    @property
    def exit_status(self) -> int:
        return SKIPPED_EXIT if self.skipped else 0


def _read(path: str) -> Tuple[str, object]:
    """``(path, image array)``, or ``(path, ImageReadError)`` for a file that cannot be read."""
    try:
        return path, read_image_file(path)
    except ImageReadError as e:
        return path, e


def _batches(paths: Sequence[str], batch_size: int) -> Iterator[List[Tuple[str, object]]]:
    """Batches of ``(path, image or error)``, the next batch read while this one is used."""
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(lambda c: [_read(p) for p in c], chunks[0]) if chunks else None
        for i in range(len(chunks)):
            batch = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(lambda c: [_read(p) for p in c], chunks[i + 1])
            yield batch


def predict_files(paths: Sequence[str], predict: Callable[[List[np.ndarray]], list],
                  on_result: Callable[[str, np.ndarray, object], None], *, batch_size: int = 1,
                  progress: bool = True) -> PredictionRun:
    """Run ``predict`` (a list of ``(H, W, 3)`` uint8 RGB arrays -> one result each) over the
    images at ``paths`` and give each ``(path, image, result)`` to ``on_result``; unreadable
    files are reported on stderr and skipped."""
    from tqdm import tqdm
    run = PredictionRun()
    start = time.perf_counter()
    with tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for batch in _batches(list(paths), max(1, batch_size)):
            readable = [(p, x) for p, x in batch if not isinstance(x, ImageReadError)]
            for p, x in batch:
                if isinstance(x, ImageReadError):
                    reason = str(x)[len(p):].lstrip(": ") if str(x).startswith(p) else str(x)
                    run.skipped.append((p, reason))
                    bar.write(f"skipped {x}", file=sys.stderr)
            if readable:
                results = predict([x for _, x in readable])
                for (p, x), result in zip(readable, results):
                    on_result(p, x, result)
                run.done += len(readable)
            bar.update(len(batch))
    run.seconds = time.perf_counter() - start
    return run

"""The classification trainer's metrics: ``metrics.csv`` and ``metrics.json`` (one JSON object
per line; what ``tools/plot_curves.py`` reads) and TensorBoard events (``torch.utils.tensorboard``).

Ours, not detectron2's ``EventWriter``s: the classification layer does not import detectron2,
and a resumed run must rewrite what the interrupted one logged after its checkpoint. Lines are
appended whole (one write each) and rewrites are atomic: a crash never leaves half a line.
"""
import csv
import io
import json
from pathlib import Path
from typing import Dict, Iterable

from ..checkpoint import append_text, keep_json_lines, write_text_atomic


class MetricsLog:
    """metrics.csv + metrics.json (one JSON object per line) + TensorBoard events."""

    FIELDS = ["iteration", "epoch", "lr", "train_loss", "train_err", "val_top1_err",
              "val_top5_err", "images_per_s", "time"]

    def __init__(self, output_dir: str, start_iter: int):
        self.dir = Path(output_dir)
        self.csv, self.json = self.dir / "metrics.csv", self.dir / "metrics.json"
        self._truncate_after(start_iter)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_iter or None)

    def _truncate_after(self, start_iter: int) -> None:
        """A resumed run rewrites what the interrupted one logged after its checkpoint."""
        rows = keep_json_lines(self.json, lambda row: row.get("iteration", 0) <= start_iter)
        write_text_atomic(self.csv, self._csv_lines(rows, header=True))

    def _csv_lines(self, rows: Iterable[Dict], header: bool = False) -> str:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.FIELDS)
        if header:
            writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in self.FIELDS} for r in rows)
        return text.getvalue()

    def write(self, row: Dict) -> None:
        row = {k: v for k, v in row.items() if k in self.FIELDS}
        append_text(self.json, json.dumps(row) + "\n")
        append_text(self.csv, self._csv_lines([row]))
        for key, value in row.items():
            if key not in ("iteration", "epoch", "time") and isinstance(value, (int, float)):
                self.tb.add_scalar(key, value, row["iteration"])
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()

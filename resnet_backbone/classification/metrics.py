"""The classification trainer's metrics: ``metrics.csv`` and ``metrics.json`` (one JSON object
per line; what ``tools/plot_curves.py`` reads) and TensorBoard events (``torch.utils.tensorboard``).

Ours, not detectron2's ``EventWriter``s: the classification layer does not import detectron2,
and a resumed run must rewrite what the interrupted one logged after its checkpoint.
"""
import csv
import json
from pathlib import Path
from typing import Dict


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
        rows = []
        if self.json.exists():
            for line in self.json.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if row.get("iteration", 0) <= start_iter:
                    rows.append(row)
        with open(self.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with open(self.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, self.FIELDS)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in self.FIELDS} for r in rows)

    def write(self, row: Dict) -> None:
        row = {k: v for k, v in row.items() if k in self.FIELDS}
        with open(self.json, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow({k: row.get(k, "") for k in self.FIELDS})
        for key, value in row.items():
            if key not in ("iteration", "epoch", "time") and isinstance(value, (int, float)):
                self.tb.add_scalar(key, value, row["iteration"])
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()

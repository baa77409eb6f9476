"""Top-1 / top-5 error with the paper's test views (Sec. 3.4): center crop, standard 10-crop, and
the fully-convolutional multi-scale test. Softmax scores are averaged over a test image's views.

With global average pooling before the fully-connected layer, running the whole image through
the network *is* the fully-convolutional form: the fc layer applied at every position of the last
feature map and averaged equals the fc layer applied to the averaged features.

``class_probabilities`` and ``average_over_views`` are how a test image is scored: the
evaluation here and the predictor (``classification.predictor``) both use them.
"""
import contextlib
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..distributed import all_reduce_sum, get_rank, get_world_size
from ..data.datasets import ArrayDataset
from .shard_data import ShardEvalItems, ShardedImages
from .transforms import TestViews


class _EvalDataset(Dataset):
    """This process's share (every world_size-th image) of a test set, as views of ``mode``."""

    def __init__(self, base, views: TestViews, mode: str, rank: int, world_size: int):
        self.base, self.views, self.mode = base, views, mode
        self.indices = list(range(rank, len(base), world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        img, label = self.base[self.indices[i]]
        if img is None:  # a corrupt image skipped by DATALOADER.SKIP_CORRUPT
            return None
        return self.views(self.mode, img), label, self.indices[i]


def _collate(items):
    kept = [it for it in items if it is not None]
    return kept, len(items) - len(kept)


def class_probabilities(model: nn.Module, x: torch.Tensor, *, device="cpu",
                        autocast: Optional[contextlib.AbstractContextManager] = None,
                        memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Softmax (float32) of ``model`` on the batch ``x`` (the caller sets eval mode, no grad)."""
    x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    with autocast or contextlib.nullcontext():
        return torch.softmax(model(x).float(), dim=1)


def average_over_views(probabilities: Callable[[torch.Tensor], torch.Tensor], views: Sequence,
                       mode: str) -> torch.Tensor:
    """(B, classes): each image's class probabilities averaged over its test views (Sec. 3.4).

    ``views``: one entry per image, as ``TestViews(mode, image)`` gives it: a ``(V, C, H, W)``
    tensor (center, ten_crop; one size for all images: they run as one batch), or for
    multi_scale a list of ``(v, C, h, w)`` tensors, one per scale (run one by one).
    ``probabilities``: a batch of views -> their softmax (``class_probabilities``)."""
    if mode == "multi_scale":
        return torch.stack([torch.cat([probabilities(v) for v in per_image]).mean(0)
                            for per_image in views])
    x = torch.stack(list(views))  # (B, V, C, H, W)
    b, v = x.shape[:2]
    return probabilities(x.flatten(0, 1)).view(b, v, -1).mean(1)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, views: TestViews, mode: str = "center", *,
             batch_size: int = 100, num_workers: int = 0, device: str = "cpu",
             autocast: Optional[contextlib.AbstractContextManager] = None,
             channels_last: bool = False, return_scores: bool = False) -> Dict:
    """Top-1/top-5 error (%) of ``model`` on ``dataset`` (shared between processes).

    Returns ``{"top1_err", "top5_err", "count", "skipped"}`` (and ``scores``/``labels``/
    ``indices`` of this process's images with ``return_scores``).
    """
    fixed_size = isinstance(dataset, ArrayDataset) or (views.crop and mode != "multi_scale")
    per_batch = batch_size if fixed_size and mode != "multi_scale" else 1
    share = (ShardEvalItems if isinstance(dataset, ShardedImages) else _EvalDataset)(
        dataset, views, mode, get_rank(), get_world_size())
    loader = DataLoader(share, batch_size=per_batch, num_workers=num_workers, collate_fn=_collate)
    was_training = model.training
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    stats = torch.zeros(4, dtype=torch.float64)  # top1 wrong, top5 wrong, count, skipped
    all_scores, all_labels, all_indices = [], [], []

    def scores_of(x: torch.Tensor) -> torch.Tensor:
        return class_probabilities(model, x, device=device, autocast=autocast,
                                   memory_format=memory_format)

    try:
        for kept, skipped in loader:
            stats[3] += skipped
            if not kept:
                continue
            scores = average_over_views(scores_of, [v for v, _, _ in kept], mode)
            labels = torch.tensor([label for _, label, _ in kept], device=scores.device)
            top5 = scores.topk(min(5, scores.shape[1]), dim=1).indices
            stats[0] += (top5[:, 0] != labels).sum().item()
            stats[1] += (~(top5 == labels[:, None]).any(1)).sum().item()
            stats[2] += len(kept)
            if return_scores:
                all_scores.append(scores.cpu())
                all_labels.append(labels.cpu())
                all_indices += [i for _, _, i in kept]
    finally:
        model.train(was_training)
    stats = all_reduce_sum(stats.to(device)).cpu()
    count = max(stats[2].item(), 1)
    result = {"top1_err": 100 * stats[0].item() / count, "top5_err": 100 * stats[1].item() / count,
              "count": int(stats[2].item()), "skipped": int(stats[3].item())}
    if return_scores:
        result.update(scores=torch.cat(all_scores), labels=torch.cat(all_labels),
                      indices=all_indices)
    return result

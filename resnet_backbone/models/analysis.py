"""Model size and complexity, measured with fvcore, against the paper's Table 1 and Table 6.

FLOPs are fvcore's ``FlopCountAnalysis`` totals: one multiply-add counts as one FLOP, as in the
paper ("3.6 billion FLOPs (multiply-adds)", Sec. 3.3). fvcore counts convolutions and the fc layer
and also the BN layers and the final average pooling (about 0.6% of the total); ``by_operator``
gives the split. The paper prints its counts truncated to one decimal (ResNet-34: 3.67e9 is
"3.6"), so ``paper_truncate`` compares ours the same way. Parameters are fvcore's
``parameter_count``. The ``TABLE*_PAPER_*`` constants are quoted from the paper; everything else
is measured.
"""
import math
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..third_party import quiet_third_party_imports
from .registry import create_model

with quiet_third_party_imports():
    from fvcore.nn import FlopCountAnalysis, parameter_count

#: Table 1, "FLOPs" row (x 1e9), for 224x224 inputs.
TABLE1_PAPER_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
#: Table 6, "# params" column (millions), CIFAR-10 ResNets with option-A shortcuts.
TABLE6_PAPER_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


def count_parameters(model: nn.Module) -> int:
    """All parameters (trainable or not) of ``model``."""
    return parameter_count(model)[""]


def flop_analysis(model: nn.Module, input_size: int = 224, in_channels: int = 3) -> FlopCountAnalysis:
    """fvcore's analysis of one ``in_channels x input_size x input_size`` image through ``model``
    (in eval mode, so BN counts as in inference), with its unsupported-op warnings silenced
    (ReLU and additions carry no multiply-adds)."""
    if input_size < 1:
        raise ValueError(f"input_size must be a positive number of pixels; got {input_size}")
    image = torch.zeros(1, in_channels, input_size, input_size)
    was_training = model.training
    model.eval()
    analysis = FlopCountAnalysis(model, image)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        analysis.total()  # run the trace now, in eval mode, without keeping activations
    model.train(was_training)
    return analysis


def count_flops(model: nn.Module, input_size: int = 224, in_channels: int = 3) -> int:
    """Multiply-adds for one ``input_size x input_size`` image (fvcore total)."""
    return int(flop_analysis(model, input_size, in_channels).total())


def paper_truncate(value: float, decimals: int = 1) -> float:
    """How the paper prints a count: truncated, not rounded (3.67 -> 3.6)."""
    scale = 10 ** decimals
    return math.floor(value * scale + 1e-9) / scale


def paper_round_params(millions: float) -> float:
    """Table 6's rounding of parameter counts: two significant digits, three from 10M up
    (0.2697 -> 0.27, 1.728 -> 1.7, 19.42 -> 19.4)."""
    digits = 3 if millions >= 10 else 2
    return round(millions, digits - 1 - math.floor(math.log10(millions)))


def analyze(name: str, input_size: int = 224, num_classes: Optional[int] = None,
            **model_kwargs: Any) -> Dict[str, Any]:
    """Parameters and FLOPs of ``create_model(name, ...)`` for one square image."""
    if num_classes is not None:
        model_kwargs["num_classes"] = num_classes
    model = create_model(name, **model_kwargs)
    analysis = flop_analysis(model, input_size)
    return {"model": name, "options": model_kwargs, "input_size": input_size,
            "params": count_parameters(model), "flops": int(analysis.total()),
            "flops_by_operator": {k: int(v) for k, v in analysis.by_operator().items()}}


def table1_rows(input_size: int = 224) -> List[Dict[str, Any]]:
    """Table 1's FLOPs row: ours (paper's stride placement, then torchvision's stride-in-3x3
    for the bottleneck nets, which the paper's numbers rule out) beside the paper's."""
    rows = []
    for depth, paper in TABLE1_PAPER_GFLOPS.items():
        placements = [True] if depth < 50 else [True, False]
        for stride_in_1x1 in placements:
            model = create_model(f"resnet{depth}", stride_in_1x1=stride_in_1x1)
            gflops = count_flops(model, input_size) / 1e9
            rows.append({"model": f"resnet{depth}",
                         "stride": "1x1" if stride_in_1x1 else "3x3",
                         "params": count_parameters(model), "gflops": gflops,
                         "gflops_truncated": paper_truncate(gflops), "paper_gflops": paper,
                         "matches_paper": paper_truncate(gflops) == paper})
    return rows


def table6_rows() -> List[Dict[str, Any]]:
    """Table 6's parameter column: ours (CIFAR-10 ResNets, option A) beside the paper's."""
    rows = []
    for depth, paper in TABLE6_PAPER_PARAMS_M.items():
        params = count_parameters(create_model(f"cifar_resnet{depth}"))
        millions = params / 1e6
        rows.append({"model": f"cifar_resnet{depth}", "params": params,
                     "params_m": millions, "params_m_rounded": paper_round_params(millions),
                     "paper_params_m": paper,
                     "matches_paper": paper_round_params(millions) == paper})
    return rows

"""Mode connectivity: fitted curves between trained networks (:func:`connect`), paths without
training (linear; Anokhin & Yarotsky's lin/arc rules with index or OT pairing, weight adjustment,
butterfly), permutation alignment of any traceable architecture, REPAIR, WA(n) ensembling, path
evaluation and loss planes."""

from .alignment import align, align_mlp, ot_permutation, permute_hidden
from .conv_butterfly import ConvButterflyPath
from .curves import connect
from .ensembling import wa_ensemble
from .evaluation import PathEvaluation, evaluate_path, evaluate_states_batched, loss_and_error, plot_paths
from .mlp import fit_linear, layer_inputs, linear_layers
from .paths import (
    ButterflyPath,
    LinearPath,
    NeuronPath,
    Path,
    SimultaneousPath,
    StepwiseAdjustedPath,
    SubspacePath,
    WeightAdjustedPath,
)
from .permutation_spec import PermutationSpec, permutation_spec
from .plane import LossPlane, curve_plane, loss_plane
from .rebasin import Alignment, alignment
from .repair import Repair, remove_repair
from .rules import arc, lin

__all__ = [
    "Alignment",
    "ButterflyPath",
    "ConvButterflyPath",
    "LinearPath",
    "LossPlane",
    "NeuronPath",
    "Path",
    "PathEvaluation",
    "PermutationSpec",
    "Repair",
    "SimultaneousPath",
    "StepwiseAdjustedPath",
    "SubspacePath",
    "WeightAdjustedPath",
    "align",
    "align_mlp",
    "alignment",
    "arc",
    "connect",
    "curve_plane",
    "evaluate_path",
    "evaluate_states_batched",
    "fit_linear",
    "layer_inputs",
    "lin",
    "linear_layers",
    "loss_and_error",
    "loss_plane",
    "ot_permutation",
    "permutation_spec",
    "permute_hidden",
    "plot_paths",
    "remove_repair",
    "wa_ensemble",
]

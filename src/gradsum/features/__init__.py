"""What layers respond to: filter grids, feature maps, activation maximisation and
maximally activating dataset patches."""
from gradsum.features.activation_max import PRESETS, MaxResult, maximize
from gradsum.features.filters import FeatureMaps, FilterGrid, feature_maps, filter_grid
from gradsum.features.objectives import (
    OUTPUT,
    Objective,
    channel,
    class_logit,
    dense_unit,
    direction,
    neuron,
)
from gradsum.features.patches import (
    ReceptiveField,
    TopPatches,
    patch_attributions,
    receptive_field,
    top_patches,
)
from gradsum.features.survey import (
    FeatureBudget,
    LayerChannels,
    LayerSurvey,
    activation_layers,
    layer_survey,
)
from gradsum.features.transforms import Transforms

__all__ = [
    "OUTPUT",
    "PRESETS",
    "FeatureBudget",
    "FeatureMaps",
    "FilterGrid",
    "LayerChannels",
    "LayerSurvey",
    "MaxResult",
    "Objective",
    "ReceptiveField",
    "TopPatches",
    "Transforms",
    "activation_layers",
    "channel",
    "class_logit",
    "dense_unit",
    "direction",
    "feature_maps",
    "filter_grid",
    "layer_survey",
    "maximize",
    "neuron",
    "patch_attributions",
    "receptive_field",
    "top_patches",
]

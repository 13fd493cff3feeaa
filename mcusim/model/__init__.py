"""What network: the model description (schema), the zoo, and importers from ONNX / TFLite.

Separate from how a layer computes (mcusim.fqt: the FQT maths, the twin, the kernels' calls).
"""

from mcusim.model.schema import LayerSpec, ModelSpec, TrainSettings, parse_model
from mcusim.model.zoo import MODELS_DIR, load_model, zoo_names

__all__ = ["MODELS_DIR", "LayerSpec", "ModelSpec", "TrainSettings", "load_model", "parse_model",
           "zoo_names"]

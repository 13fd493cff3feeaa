"""A model as a command or a sweep names it: a zoo name, a model TOML, or an ONNX / TFLite
file (imported on the fly into the cache), with the trainable layers and the training
settings applied.  One definition for the CLI and for sweep points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcusim.errors import UsageError
from mcusim.model.schema import ModelSpec

# the [train] settings a command line or a sweep may change (TrainSettings field names)
TRAIN_SETTINGS = ("lambda_min", "lambda_max", "rounding", "update_rounding", "fc_gradient",
                  "batch_size")


def load_spec(model: str, *, input_shape: tuple[int, int, int] | None = None,
              train_last: int | None = None,
              trainable: Sequence[str] | None = None) -> ModelSpec:
    """The model named `model`, with --train-last / --trainable applied."""
    from mcusim.model.writer import imported_spec, source_format
    from mcusim.model.zoo import load_model

    if source_format(model):
        spec = imported_spec(model, input_shape=input_shape)
    else:
        if input_shape is not None:
            raise UsageError("--input-shape applies to .onnx / .tflite models only (a model "
                             "TOML states its input)")
        spec = load_model(model)
    if train_last is not None:
        if trainable:
            raise UsageError("give --train-last or --trainable, not both")
        spec = spec.with_trainable_tail(train_last)
    elif trainable:
        spec = spec.with_trainable(list(trainable))
    return spec


def budget_spec(spec: ModelSpec) -> ModelSpec:
    """The model as `mcusim budget` runs it: the batch asked for must be trainable (checked),
    then one sample and an update (the stack peak) unless FC gradients are kept as pairs,
    whose buffers grow with the batch."""
    spec.check_batch()
    if spec.train.fc_gradient != "pairs":
        spec = spec.with_train(batch_size=1)
    return spec


def apply_train(spec: ModelSpec, **changes: Any) -> ModelSpec:
    """The model with these [train] settings changed (None: keep the model's).  λ_min alone
    raises λ_max to at least λ_min, as on the command line."""
    unknown = set(changes) - set(TRAIN_SETTINGS)
    if unknown:
        raise ValueError(f"not training settings: {sorted(unknown)}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if "lambda_min" in changes and "lambda_max" not in changes:
        changes["lambda_max"] = max(spec.train.lambda_max, changes["lambda_min"])
    return spec.with_train(**changes) if changes else spec

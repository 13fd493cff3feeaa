"""The model zoo (``models/*.toml`` shipped in the package) and loading a model by name or path."""

from __future__ import annotations

from pathlib import Path

from mcusim.errors import ModelError
from mcusim.model.schema import (
    ModelSpec,
    _display,
    _read_text,
    _unknown_model_message,
    parse_model,
)
from mcusim.resources import data_dir

MODELS_DIR = data_dir("models")


def zoo_names() -> list[str]:
    """The models of the zoo: sorted stems of models/*.toml."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def load_model(name_or_path: str | Path) -> ModelSpec:
    """Load a zoo model by name (case-insensitive) or a model TOML file by path."""
    if isinstance(name_or_path, Path):
        path = name_or_path
    else:
        text = str(name_or_path)
        if text.lower().endswith(".toml") or "/" in text or "\\" in text:
            path = Path(text)
        else:
            zoo = {n.lower(): n for n in zoo_names()}
            if text.lower() in zoo:
                path = MODELS_DIR / f"{zoo[text.lower()]}.toml"
            elif text and Path(text).is_file():
                path = Path(text)
            else:
                raise ModelError(_unknown_model_message(text, list(zoo.values())))
    spec = parse_model(_read_text(path), source=str(path))
    if spec.weights is not None:  # a missing or odd weights file: now, before any work
        from mcusim.model.weights import MAX_WEIGHTS_BYTES
        from mcusim.userfiles import check_regular

        try:
            check_regular(spec.weights, "a weights file (.npz)", MAX_WEIGHTS_BYTES, ModelError)
        except ModelError as e:
            raise ModelError(f"{_display(str(path))}: [model] weights: {e}") from None
    return spec

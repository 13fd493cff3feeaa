"""mcusim: can this neural network be trained on this Cortex-M MCU, and at what cost?"""

from __future__ import annotations

__version__ = "0.1.0"

from mcusim.catalog import Catalog, Core, Mcu, load_catalog

__all__ = ["Catalog", "Core", "Mcu", "StepReport", "__version__", "load_catalog",
           "simulate_step"]


def __getattr__(name: str):  # the analyzer pulls in Unicorn: import it on first use
    if name in ("simulate_step", "StepReport"):
        from mcusim import analyze

        return getattr(analyze, name)
    raise AttributeError(f"module 'mcusim' has no attribute {name!r}")

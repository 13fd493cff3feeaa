"""mcusim: can this neural network be trained on this Cortex-M MCU, and at what cost?"""

from __future__ import annotations

__version__ = "0.1.0"

from mcusim.catalog import Catalog, Core, Mcu, load_catalog

__all__ = ["Catalog", "Core", "Mcu", "__version__", "load_catalog"]

"""Where mcusim's data lives: kernels/, models/, cost_models/ and examples/.

In the repository they sit at the top level beside the package; a built wheel carries them
inside the package as `mcusim/_data/<name>/` (setup.py copies them there at build time).
They are found with importlib.resources, so every kind of install works: a wheel in any
site-packages, an editable install, or running from a checkout.  Nothing here prints.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

DATA_DIRS = ("kernels", "models", "cost_models", "examples")
# one file per folder that proves it is the real thing, not an empty leftover
_MARKERS = {"kernels": "fqt.h", "models": "digits-cnn.toml", "cost_models": "mcus.toml",
            "examples": "sweep.toml"}


def data_dir(name: str) -> Path:
    """The folder `name` (kernels, models, cost_models or examples) of this installation.

    Never raises: when the folder is missing the wheel's location is returned, and
    `check_installation()` says what is wrong."""
    return _find(name) or Path(str(resources.files("mcusim"))) / "_data" / name


@cache
def _find(name: str) -> Path | None:
    if name not in DATA_DIRS:
        raise ValueError(f"unknown data folder {name!r}")
    package = Path(str(resources.files("mcusim")))
    for cand in (package / "_data" / name,   # a wheel or sdist install
                 package.parent / name):       # a checkout (editable install, PYTHONPATH)
        if (cand / _MARKERS[name]).is_file():
            return cand
    return None


def check_installation() -> None:
    """Raise InternalError when a data folder is missing (a broken install, not the user's
    input)."""
    from mcusim.errors import InternalError

    missing = [n for n in DATA_DIRS if _find(n) is None]
    if missing:
        where = Path(str(resources.files("mcusim")))
        raise InternalError(
            f"this installation of mcusim lacks its {', '.join(m + '/' for m in missing)} "
            f"data ({where}); reinstall it (pip install --force-reinstall mcusim)")

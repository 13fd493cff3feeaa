"""Build the optional native block hook and put the data folders into the wheel; everything
else is in pyproject.toml.

kernels/, models/, cost_models/ and examples/ stay at the top of the repository; a built
wheel (and an install from an sdist) carries them as `mcusim/_data/<name>/`, where
mcusim.resources finds them with importlib.resources.
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("kernels", "models", "cost_models", "examples")
DATA_SUFFIXES = {".c", ".h", ".S", ".toml"}


class build_py_with_data(build_py):
    """build_py, plus the data folders copied into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install finds them in the checkout
            return
        target = Path(self.build_lib) / "mcusim" / "_data"
        for name in DATA_DIRS:
            src = ROOT / name
            if not src.is_dir():
                raise SystemExit(f"setup.py: data folder {name}/ is missing from {ROOT}")
            dest = target / name
            if dest.exists():
                shutil.rmtree(dest)
            for f in sorted(src.rglob("*")):
                if f.is_file() and f.suffix in DATA_SUFFIXES:
                    out = dest / f.relative_to(src)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, out)


setup(
    cmdclass={"build_py": build_py_with_data},
    ext_modules=[
        Extension(
            "mcusim.trace._blockhook",
            sources=["mcusim/trace/_blockhook.c", "mcusim/trace/_alignhook.c"],
            extra_compile_args=["-O2"],
            optional=True,  # without a C compiler mcusim falls back to the Python tracer
        )
    ],
)

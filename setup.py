"""Build the optional native block hook; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mcusim.trace._blockhook",
            sources=["mcusim/trace/_blockhook.c"],
            extra_compile_args=["-O2"],
            optional=True,  # without a C compiler mcusim falls back to the Python tracer
        )
    ]
)

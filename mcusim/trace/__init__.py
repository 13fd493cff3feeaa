"""Basic-block tracing: which blocks ran how often, and the instructions they hold."""

from mcusim.trace.blocks import BlockCounter

__all__ = ["BlockCounter"]

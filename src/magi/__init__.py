"""magi: an open PyTorch implementation of MAGI-1, the autoregressive video diffusion world model."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from magi import Magi`` (the Python API, magi.api) without importing torch on ``import magi``."""
    if name == "Magi":
        from magi.api import Magi

        return Magi
    raise AttributeError(f"module 'magi' has no attribute {name!r}")

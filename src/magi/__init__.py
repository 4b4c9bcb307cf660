"""magi: an open PyTorch implementation of MAGI-1, the autoregressive video diffusion world model."""

__version__ = "0.1.0"

"""``torch.compile`` of the DiT, applied from outside: the whole network, or one transformer block at a time.

Eager PyTorch runs every operator on its own: each RMSNorm, gate, SwiGLU product and RoPE rotation reads and
writes its whole tensor, and every call pays the operator's dispatch: at the sizes of the shipped model a
large share of a generation's time (measured in docs/benchmarks.md). Inductor fuses those operators into a
few generated kernels around the matmuls and attention.

Two scopes (``RunConfig.compile``):

* ``"dit"``: the whole forward, one graph per input shape. The most fusion and the least Python between
  kernels, but every shape compiles the whole network.
* ``"blocks"`` (regional compilation): each block on its own. The blocks share their code and shapes, so they
  run the same graph, and a new shape compiles one block's graph for all of them: a fraction of the compile
  time, what a 48-block model wants; the embeddings and the loop around the blocks stay eager.

Shapes are static: a generation meets a handful of them (one per number of cached and in-flight chunks and
of guidance rows), each compiled once per process (inductor also caches them on disk, so later processes
compile faster). The DiT's forward traces without graph breaks (tested): no data-dependent branches, no
index into the KV cache. Compiling takes minutes on a small CPU: it pays for long videos and many
generations of the same shapes. Outputs equal the eager ones up to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch

from magi.config import CompileScope
from magi.models.dit import DiT

RECOMPILE_LIMIT = 128  # graphs per compiled code (nn.Module's __call__, both scopes): the shapes a run meets


def compile_dit(dit: DiT, scope: CompileScope, **options: Any) -> DiT:
    """Compile ``dit`` in place with ``torch.compile(dynamic=False, **options)``, the whole forward or every
    block, and return it. Raises dynamo's per-function recompile limit, process-wide, to ``RECOMPILE_LIMIT``:
    past its default of 8 shapes it would run the rest eagerly. Apply after any module swap of the blocks
    (context parallelism)."""
    if scope == "none":
        return dit
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for module in [dit] if scope == "dit" else dit.blocks:
        module.compile(dynamic=False, **options)
    return dit

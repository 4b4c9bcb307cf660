"""torch.compile of the DiT (magi.compilation): whole graphs, one per shape (for all blocks), and the eager
video."""

import copy
from dataclasses import replace

import pytest
import torch

from conftest import randomize_
from magi.compilation import compile_dit
from magi.models.dit import DiT
from magi.sampling.sampler import Prefix, generate

pytestmark = pytest.mark.slow  # torch.compile: run by .ci/run; `pytest -m 'not slow'` skips it


def counting_backend(graphs: list, calls: list):
    """A torch.compile backend that records every graph dynamo captures, and every call of one, and runs the
    graph as captured (what dynamo traced, side effects on the KV cache replayed; no code generated)."""

    def backend(gm, example_inputs):
        graphs.append(gm)

        def run(*args):
            calls.append(len(graphs))
            return gm.forward(*args)

        return run

    return backend


def generation_inputs(dit_cfg):
    g = torch.Generator().manual_seed(0)
    context = torch.randn(2, 12, dit_cfg.context_dim, generator=g)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False  # padded text: the cross-attention mask rides along
    prefix = Prefix(torch.randn(2, dit_cfg.in_channels, 5, 8, 8, generator=g))  # 2 whole chunks and 1 frame
    return context, mask, prefix


@torch.no_grad()
@pytest.mark.parametrize("scope", ["dit", "blocks"])
def test_compiled_dit_is_whole_graphs_one_per_shape_with_the_eager_video(dit_cfg, sampler_cfg, scope):
    torch._dynamo.reset()
    dit = randomize_(DiT(dit_cfg)).eval()
    compiled = copy.deepcopy(dit)
    graphs, calls = [], []
    compile_dit(compiled, scope, backend=counting_backend(graphs, calls), fullgraph=True)  # a graph break raises
    forwards = []
    compiled.register_forward_pre_hook(lambda *_: forwards.append(1))
    context, mask, prefix = generation_inputs(dit_cfg)
    shapes = set()  # what the blocks see in every forward: one graph each (shared by the blocks)
    dit.blocks[0].register_forward_pre_hook(lambda _, a: shapes.add(
        (a[0].shape, a[5].keys is None, a[6].keys.shape if a[6].keys is not None else None,
         a[6].cache.pending_chunks, a[4][0].shape)))
    # guided with a prefix: 3 rows (the unconditional branch in uncached rows); the prefix admitted in one pass,
    # chunks in flight with and without a mask, admitted while others are denoised, cached and dropped
    cfg = replace(sampler_cfg, steps=4, guidance="text_and_prefix", window_size=2, context_chunks=2)
    kw = dict(num_chunks=3, latent_shape=(dit_cfg.in_channels, 8, 8), prefix=prefix, seed=3)
    torch.testing.assert_close(generate(compiled, cfg, context, mask, **kw), generate(dit, cfg, context, mask, **kw),
                               atol=1e-5, rtol=1e-5)
    # every forward ran compiled graphs: one for the whole DiT, or one per block
    assert len(calls) == len(forwards) * (1 if scope == "dit" else dit_cfg.depth)
    assert len(graphs) == len(shapes)


@torch.no_grad()
def test_inductor_compiled_dit_gives_the_eager_video(dit_cfg, sampler_cfg):
    torch._dynamo.reset()
    dit = randomize_(DiT(dit_cfg)).eval()
    compiled = compile_dit(copy.deepcopy(dit), "dit")  # inductor: generated C++ kernels around the matmuls
    context, mask, _ = generation_inputs(dit_cfg)
    cfg = replace(sampler_cfg, steps=2, guidance="none", window_size=1)
    kw = dict(num_chunks=1, latent_shape=(dit_cfg.in_channels, 8, 8), seed=1)  # one shape: one compile
    torch.testing.assert_close(generate(compiled, cfg, context, mask, **kw), generate(dit, cfg, context, mask, **kw),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scope", ["none", "dit", "blocks"])
def test_the_pipeline_compiles_the_dit_as_the_config_says(scope):
    from magi.config import apply_overrides
    from magi.presets import get_preset
    from magi.sampling.pipeline import build_pipeline

    cfg = apply_overrides(get_preset("tiny"), ["text.kind=hash", f"compile={scope}"])
    assert cfg.to_dict()["compile"] == scope  # saved beside every output
    pipe = build_pipeline(cfg)  # compiling happens at the first call
    assert (pipe.dit._compiled_call_impl is not None) == (scope == "dit")
    assert all((block._compiled_call_impl is not None) == (scope == "blocks") for block in pipe.dit.blocks)
    with pytest.raises(ValueError, match="compile='yes': choose one of"):
        apply_overrides(cfg, ["compile=yes"])

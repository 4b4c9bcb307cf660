from dataclasses import replace

import pytest
import torch

from magi.config import DiTConfig, RunConfig, TextConfig, TrainConfig, VAEConfig, apply_overrides
from magi.flow.matching import autoregressive_times
from magi.models.dit import DiT
from magi.training.loop import train
from magi.training.objectives import dit_objective


def tiny_cfg(steps=6) -> RunConfig:
    return RunConfig(
        name="unit",
        vae=VAEConfig(latent_channels=4, dim=32, num_heads=2),
        dit=DiTConfig(in_channels=4, dim=32, depth=1, num_heads=2, num_kv_heads=1, head_dim=16, ffn_dim=64,
                      context_dim=8, chunk_frames=2),
        text=TextConfig(kind="hash", dim=8),
        train=TrainConfig(steps=steps, batch_size=3, lr=1e-3, warmup_steps=2, checkpoint_every=3, log_every=1,
                          sample_every=0, clip_chunks=2, ema_decay=0.9),
    )


def data(n=5):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 4, 6, 4, 4, generator=g), torch.randn(n, 3, 8, generator=g),
            torch.ones(n, 3, dtype=torch.bool))


def run(cfg, run_dir, stop_after=None):
    torch.manual_seed(0)
    model = DiT(cfg.dit)
    ema, state = train(model, dit_objective(*data(), cfg), cfg, run_dir, stop_after=stop_after, progress=False)
    return model, ema, state


def test_resume_after_kill_is_exact(tmp_path):
    cfg = tiny_cfg()
    straight, straight_ema, s1 = run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b", stop_after=4)  # "killed" after step 4: last checkpoint is step 3
    resumed, resumed_ema, s2 = run(cfg, tmp_path / "b")
    assert s1.step == s2.step == 6
    assert s1.losses == s2.losses
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight_ema.state_dict().values(), resumed_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert (tmp_path / "b" / "checkpoint" / "config.json").is_file()
    assert (tmp_path / "b" / "loss.csv").read_text().count("\n") == 7


def test_loss_decreases_when_overfitting(tmp_path):
    cfg = tiny_cfg(steps=80)
    cfg = replace(cfg, train=replace(cfg.train, lr=3e-3, checkpoint_every=1000))
    latents = torch.linspace(-1, 1, 4)[None, :, None, None, None].expand(2, 4, 6, 4, 4) * 2  # one fixed video
    objective = dit_objective(latents.contiguous(), torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), cfg)
    torch.manual_seed(0)
    _, state = train(DiT(cfg.dit), objective, cfg, tmp_path, progress=False)
    assert sum(state.losses[-10:]) / 10 < 0.8 * sum(state.losses[:10]) / 10


def test_autoregressive_times_properties():
    g = torch.Generator().manual_seed(0)
    t = autoregressive_times(500, 3, 2, logit_std=1.0, shift=3.0, prefix_probs=(0.3, 0.2, 0.5), generator=g)
    assert t.shape == (500, 6) and torch.all((t > 0) & (t <= 1))
    chunk_t = t[:, ::2]
    assert torch.all(chunk_t[:, 1:] <= chunk_t[:, :-1])  # later chunks are noisier
    clean_frames = (t == 1).sum(1)
    assert set(clean_frames.tolist()) == {0, 1, 2, 4}  # t2v, i2v, v2v with 1 or 2 chunks
    assert torch.all(t[:, -2:] < 1)  # the last chunk always has something to learn
    t2v_only = autoregressive_times(50, 3, 2, logit_std=1.0, shift=3.0, prefix_probs=(1, 0, 0), generator=g)
    assert torch.all(t2v_only < 1)  # whole-number probabilities (a t2v-only stage) are probabilities too


def test_cascade_levels_keep_the_first_noisy_chunk_at_one_draw():
    """"sorted" makes the first chunk of a t2v sample the cleanest of K draws, so it is almost never very noisy;
    "cascade" keeps that chunk at one draw's distribution, later chunks at most as clean as the one before."""
    kw = dict(logit_std=1.0, shift=3.0, prefix_probs=(0.4, 0.3, 0.3))
    levels = {name: autoregressive_times(20000, 3, 2, generator=torch.Generator().manual_seed(0), levels=name, **kw)
              for name in ("sorted", "cascade")}
    one_draw = autoregressive_times(20000, 1, 2, generator=torch.Generator().manual_seed(1),
                                    **{**kw, "prefix_probs": (1.0, 0.0, 0.0)})[:, 0]
    for t in levels.values():
        chunk_t = t[:, ::2]
        assert torch.all(chunk_t[:, 1:] <= chunk_t[:, :-1])  # later chunks are never cleaner
        assert set((t == 1).sum(1).tolist()) == {0, 1, 2, 4} and torch.all(t[:, -2:] < 1)
    t2v = (levels["cascade"] == 1).sum(1) == 0
    very_noisy = (one_draw < 0.1).float().mean()
    assert abs((levels["cascade"][t2v, 0] < 0.1).float().mean() - very_noisy) < 0.02
    first_v2v = levels["cascade"][(levels["cascade"][:, :2] == 1).all(1) & (levels["cascade"][:, 2] < 1), 2]
    assert abs((first_v2v < 0.1).float().mean() - very_noisy) < 0.02  # after a prefix chunk too
    assert (levels["sorted"][t2v, 0] < 0.1).float().mean() < very_noisy / 10
    # the default stays the sorted draws the shipped weights were trained with
    default = autoregressive_times(50, 3, 2, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(default, autoregressive_times(50, 3, 2, generator=torch.Generator().manual_seed(0),
                                                     levels="sorted", **kw))


def test_t2v_samples_draw_their_own_noise_levels():
    """train.t2v_t_shift / t2v_t_logit_std move the levels of the samples without a clean prefix alone: the
    samples with a prefix keep exactly the draws they have without them."""
    kw = dict(logit_std=1.0, shift=1.0, prefix_probs=(0.4, 0.2, 0.4), levels="cascade")
    plain = autoregressive_times(20000, 3, 2, generator=torch.Generator().manual_seed(0), **kw)
    own = autoregressive_times(20000, 3, 2, generator=torch.Generator().manual_seed(0), t2v_shift=3.0,
                               t2v_logit_std=1.5, **kw)
    t2v = (plain == 1).sum(1) == 0
    assert torch.equal(t2v, (own == 1).sum(1) == 0)  # the same kinds of samples
    assert torch.equal(plain[~t2v], own[~t2v])
    chunk_t = own[:, ::2]
    assert torch.all(chunk_t[:, 1:] <= chunk_t[:, :-1]) and torch.all((own > 0) & (own < 1) | ~t2v[:, None])
    # shift 3 moves the median first-chunk level of a t2v sample from 0.5 to 0.25 (t = 0 is noise)
    assert abs(plain[t2v, 0].median() - 0.5) < 0.02 and abs(own[t2v, 0].median() - 0.25) < 0.02
    wide = (own[t2v, 0] < 0.05).float().mean()  # logit std 1.5 at shift 3: more of the very noisy levels
    narrow = (autoregressive_times(20000, 3, 2, generator=torch.Generator().manual_seed(0), t2v_shift=3.0,
                                   **kw)[t2v, 0] < 0.05).float().mean()
    assert wide > 1.5 * narrow
    with pytest.raises(ValueError, match="t2v_t_shift"):
        apply_overrides(RunConfig(), ["train.t2v_t_shift=0"])


def test_i2v_samples_condition_on_the_still_image_latent():
    from magi.training.objectives import _dit_batches

    cfg = replace(tiny_cfg(), train=TrainConfig(batch_size=6, clip_chunks=2, prefix_probs=(0.0, 1.0, 0.0)))
    n, F = 5, cfg.dit.chunk_frames
    ids = torch.arange(1, n + 1, dtype=torch.float32)
    latents = ids[:, None, None, None, None].expand(n, cfg.dit.in_channels, 2 * F, 4, 4).clone()
    stills = -latents[:, :, :1].clone()
    contexts, masks = torch.zeros(n, 4, cfg.dit.context_dim), torch.ones(n, 4, dtype=torch.bool)
    sample = _dit_batches(latents, contexts, masks, cfg, stills)
    batch = sample(DiT(cfg.dit), torch.Generator().manual_seed(0), 0.0)
    data, t = batch.data, batch.t
    assert torch.all(t[:, 0] == 1) and torch.all(t[:, 1] < 1)  # every sample is i2v
    torch.testing.assert_close(data[:, :, 0], -data[:, :, 1])  # frame 0 is the clip's still latent
    v2v = replace(cfg, train=replace(cfg.train, prefix_probs=(0.0, 0.0, 1.0)))
    data = _dit_batches(latents, contexts, masks, v2v, stills)(DiT(cfg.dit), torch.Generator(), 0.0).data
    torch.testing.assert_close(data[:, :, 0], data[:, :, 1])  # v2v keeps the real frames


@pytest.mark.parametrize(("t2v_usual", "v2v_usual"), [(True, False), (False, True), (True, True)])
def test_usual_camera_samples_draw_only_the_usual_clips_and_others_any(t2v_usual, v2v_usual):
    from magi.training.objectives import _dit_batches

    train = TrainConfig(batch_size=64, clip_chunks=2, prefix_probs=(0.4, 0.3, 0.3), t2v_usual_camera=t2v_usual,
                        v2v_usual_camera=v2v_usual)
    cfg = replace(tiny_cfg(), train=train)
    n, F = 6, cfg.dit.chunk_frames
    ids = torch.arange(n, dtype=torch.float32)
    latents = ids[:, None, None, None, None].expand(n, cfg.dit.in_channels, 2 * F, 4, 4).clone()
    contexts, masks = torch.zeros(n, 4, cfg.dit.context_dim), torch.ones(n, 4, dtype=torch.bool)
    usual = torch.tensor([True, False, True, False, False, False])
    dit = DiT(cfg.dit)
    plain = _dit_batches(latents, contexts, masks, cfg)(dit, torch.Generator().manual_seed(0), 0.0)
    batch = _dit_batches(latents, contexts, masks, cfg, usual_clips=usual)(dit, torch.Generator().manual_seed(0), 0.0)
    clip = batch.data[:, 0, -1, 0, 0].long()  # which clip each row came from
    t2v, v2v = batch.t[:, 0] < 1, batch.t[:, 1] == 1
    i2v = ~t2v & ~v2v
    assert torch.equal(batch.t, plain.t) and t2v.any() and v2v.any() and i2v.any()  # the same levels and draws
    kept = (t2v & t2v_usual) | (v2v & v2v_usual)  # the rows the switches keep to the usual clips
    assert usual[clip[kept]].all()  # the kept rows only from the usual clips
    assert (~usual[clip[~kept]]).any()  # the others from any clip
    assert torch.equal(batch.data[~kept], plain.data[~kept]) and torch.equal(batch.data[i2v], plain.data[i2v])
    with pytest.raises(ValueError, match="no clip is shown through the usual camera"):
        _dit_batches(latents, contexts, masks, cfg, usual_clips=torch.zeros(n, dtype=torch.bool))


def test_motion_cells_mark_the_latent_cells_a_moving_object_passes():
    from magi.training.objectives import motion_cells

    frames = torch.full((1, 8, 16, 16, 3), 40, dtype=torch.uint8)  # static background
    frames[0, :, 12:14, 12:14] = 90  # a small static object: background too (it is the median)
    for t in range(8):
        frames[0, t, 1:3, t:t + 2] = 200  # a 2x2 square moving right through the top row of cells
    cells = motion_cells(frames, patch_t=4, patch_hw=4)
    assert cells.shape == (1, 1, 2, 4, 4) and cells.dtype == torch.bool
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[0, 0, :2] = True  # frames 0-3: columns 0..4 -> cells 0, 1
    expected[1, 0, 1:3] = True  # frames 4-7: columns 4..8 -> cells 1, 2
    assert torch.equal(cells[0, 0], expected)


def test_motion_weight_scales_the_loss_where_something_moves():
    from magi.flow.matching import noisy_frame_mse
    from magi.training.objectives import _dit_batches

    prediction, target = torch.zeros(2, 3, 4, 2, 2), torch.ones(2, 3, 4, 2, 2)
    t = torch.full((2, 4), 0.5)
    plain = noisy_frame_mse(prediction, target, t)
    assert torch.equal(noisy_frame_mse(prediction, target, t, weight=torch.ones(2, 1, 4, 2, 2)), plain)
    weight = torch.ones(2, 1, 4, 2, 2)
    weight[:, :, :, 0, 0] = 5.0  # a quarter of the positions count 5x: mean weight 2
    assert torch.isclose(noisy_frame_mse(prediction, target, t, weight=weight), 2 * plain)

    cfg = replace(tiny_cfg(), train=replace(tiny_cfg().train, motion_weight=3.0))
    latents, contexts, masks = data()
    motion = torch.zeros(5, 1, 6, 4, 4, dtype=torch.bool)
    motion[:, :, :, 1, 2] = True
    batch = _dit_batches(latents, contexts, masks, cfg, motion=motion)(DiT(cfg.dit), torch.Generator(), 0.0)
    assert batch.weight.shape == (3, 1, 4, 4, 4)
    assert torch.all(batch.weight[:, :, :, 1, 2] == 4.0) and batch.weight.sum() == 3 * 4 * (15 + 4)
    without = _dit_batches(latents, contexts, masks, tiny_cfg(), motion=motion)(DiT(cfg.dit), torch.Generator(), 0.0)
    assert without.weight is None  # motion_weight 0: the plain mean
    with pytest.raises(ValueError, match="motion"):
        _dit_batches(latents, contexts, masks, cfg)


def test_vae_motion_weight_counts_only_the_moving_pixels_more():
    from magi.models.vae import TransformerVAE
    from magi.training.objectives import vae_objective

    cfg = replace(tiny_cfg(), train=replace(tiny_cfg().train, batch_size=2, clip_frames=8))
    weighted = replace(cfg, train=replace(cfg.train, motion_weight=4.0))
    still = torch.full((2, 8, 16, 16, 3), 60, dtype=torch.uint8)
    moving = still.clone()
    for t in range(8):
        moving[:, t, 4:8, t:t + 4] = 220
    torch.manual_seed(0)
    vae = TransformerVAE(cfg.vae)
    for clips, changes in ((still, False), (moving, True)):
        plain, more = vae_objective(clips, cfg)(vae, 0), vae_objective(clips, weighted)(vae, 0)
        assert bool(more > plain * 1.01) == changes  # a clip where nothing moves: the same loss


def test_frozen_parameters_stay_and_the_others_train(tmp_path):
    from magi.training.optim import freeze

    cfg = replace(tiny_cfg(steps=3), train=replace(tiny_cfg(steps=3).train, frozen=("blocks.0.ffn", "patch_embed")))
    torch.manual_seed(0)
    model = DiT(cfg.dit)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, dit_objective(*data(), cfg), cfg, tmp_path, progress=False)
    after = model.state_dict()
    unchanged = {key for key in before if torch.equal(before[key], after[key])}
    assert unchanged == {key for key in before if key.startswith(("blocks.0.ffn", "patch_embed"))}
    with pytest.raises(ValueError, match="'decoder'"):
        freeze(DiT(cfg.dit), ("blocks", "decoder"))


def test_vae_latent_noise_perturbs_what_the_decoder_sees():
    from magi.models.vae import TransformerVAE
    from magi.training.objectives import vae_objective

    cfg = replace(tiny_cfg(), train=replace(tiny_cfg().train, batch_size=2, clip_frames=8))
    clips = torch.randint(0, 255, (2, 8, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    vae = TransformerVAE(cfg.vae)
    losses = [vae_objective(clips, replace(cfg, train=replace(cfg.train, latent_noise=sigma)))(vae, 0).item()
              for sigma in (0.0, 0.0, 1.0)]
    assert losses[0] == losses[1] != losses[2]  # deterministic per step; the noise changes the reconstruction




def test_own_context_regenerates_exactly_the_whole_chunk_prefixes():
    """train.own_context: the picked rows' clean whole-chunk prefixes become the DiT's own regeneration; with the
    exact velocity towards the data the regeneration is the data (the Euler steps are right); i2v and t2v rows,
    the noisy frames and the levels stay as they were."""
    from magi.training.objectives import _dit_batches, with_own_context

    cfg = replace(tiny_cfg(), train=TrainConfig(batch_size=12, clip_chunks=3, prefix_probs=(0.3, 0.3, 0.4)))
    latents, contexts, masks = torch.randn(5, 4, 6, 4, 4, generator=torch.Generator().manual_seed(1)), *data()[1:]
    dit = DiT(cfg.dit)
    b = _dit_batches(latents, contexts, masks, cfg)(dit, torch.Generator().manual_seed(0), 0.1)
    F = cfg.dit.chunk_frames
    whole = (b.t[:, :F] == 1).all(dim=1)
    assert whole.any() and (~whole).any()  # both kinds of rows in the batch

    def exact(x, t, context, mask, no_text=None):  # the velocity that ends on the data at t = 1
        target = b.data[rows]
        return (target - x) / (1 - t).clamp(min=1e-6)[:, None, :, None, None]

    rows = whole.nonzero().flatten()
    ideal = with_own_context(exact, b, torch.Generator().manual_seed(2), 1.0, 0.5, F)
    torch.testing.assert_close(ideal.data, b.data)

    own = with_own_context(dit, b, torch.Generator().manual_seed(2), 1.0, 0.5, F)
    assert torch.equal(own.t, b.t) and torch.equal(own.context, b.context)
    changed = (own.data != b.data).any(dim=(1, 3, 4))  # (B, T)
    assert torch.equal(changed, (b.t == 1) & whole[:, None])  # exactly the prefix frames of whole-prefix rows
    none = with_own_context(dit, b, torch.Generator().manual_seed(2), 0.0, 0.5, F)
    assert torch.equal(none.data, b.data)


def test_own_context_trains_and_leaves_the_default_draws_alone(tmp_path):
    from magi.training.objectives import dit_objective

    cfg = replace(tiny_cfg(), train=replace(tiny_cfg().train, prefix_probs=(0.0, 0.0, 1.0)))
    torch.manual_seed(0)
    dit = DiT(cfg.dit)
    plain = dit_objective(*data(), cfg)(dit, 0)
    assert torch.equal(plain, dit_objective(*data(), cfg)(dit, 0))
    own = dit_objective(*data(), replace(cfg, train=replace(cfg.train, own_context=1.0)))(dit, 0)
    assert torch.isfinite(own) and not torch.equal(own, plain)
    own.backward()
    assert all(p.grad is not None for p in dit.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="own_context"):
        TrainConfig(own_context=1.5)


def test_frame_change_loss_sees_only_change_within_a_chunk_of_noisy_frames():
    from magi.flow.matching import frame_change_mse

    target = torch.zeros(2, 3, 6, 2, 2)  # 2 chunks of 3 frames
    t = torch.full((2, 6), 0.5)
    same = torch.ones(2, 3, 6, 2, 2)  # wrong by the same amount in every frame: no change error
    assert frame_change_mse(same, target, t, chunk_frames=3) == 0
    jump = torch.zeros(2, 3, 6, 2, 2)
    jump[:, :, 3:] = 1.0  # changes only across the chunk border: not a pair of one chunk
    assert frame_change_mse(jump, target, t, chunk_frames=3) == 0
    step = torch.zeros(2, 3, 6, 2, 2)
    step[:, :, 1:3] = 1.0  # 0 -> 1 between frames 0 and 1, in chunk 0: 1 of the 4 pairs of a row
    assert frame_change_mse(step, target, t, chunk_frames=3) == 0.25
    clean = t.clone()
    clean[:, 0] = 1.0  # frame 0 clean: its pair is out, the 3 pairs left have no change
    assert frame_change_mse(step, target, clean, chunk_frames=3) == 0
    # under data parallelism the ranks' shares average to the loss
    halves = [frame_change_mse(step[rows], target[rows], t, 3, rows) for rows in (slice(0, 1), slice(1, 2))]
    assert torch.isclose(sum(halves) / 2, frame_change_mse(step, target, t, 3))


def test_change_weight_adds_the_change_loss_to_the_same_draw(monkeypatch):
    import magi.flow.matching as matching
    from conftest import randomize_

    cfg = tiny_cfg()
    model = randomize_(DiT(cfg.dit))
    plain = dit_objective(*data(), cfg)(model, 3)
    real, seen = matching.frame_change_mse, []
    monkeypatch.setattr(matching, "frame_change_mse", lambda *args: seen.append(real(*args)) or seen[-1])
    with_change = dit_objective(*data(), replace(cfg, train=replace(cfg.train, change_weight=2.0)))(model, 3)
    assert len(seen) == 1 and seen[0] > 0
    assert torch.isclose(with_change - plain, 2 * seen[0])  # the same draw, plus twice its change loss


def test_image_objective_fits_each_captions_still(tmp_path):
    """The first-frame model learns a still per caption: the loss falls, and at low noise its one-step clean
    estimate is its caption's still, not the other one."""
    from magi.config import ImageConfig
    from magi.training.objectives import image_objective

    base = tiny_cfg(steps=150)
    image = ImageConfig(dit=replace(base.dit, chunk_frames=1, patch_size=1))
    cfg = replace(base, image=image, train=replace(base.train, lr=3e-3, batch_size=8, checkpoint_every=1000,
                                                   t_shift=1.0, caption_dropout=0.0))
    stills = torch.stack([torch.full((4, 1, 4, 4), 1.5), torch.full((4, 1, 4, 4), -1.5)])  # (2, C, 1, h, w)
    contexts = torch.stack([torch.ones(3, 8), -torch.ones(3, 8)])  # one caption each
    torch.manual_seed(0)
    model = DiT(image.dit)
    _, state = train(model, image_objective(stills, contexts, torch.ones(2, 3, dtype=torch.bool), cfg), cfg,
                     tmp_path, progress=False)
    assert sum(state.losses[-10:]) / 10 < 0.5 * sum(state.losses[:10]) / 10
    t = torch.full((2, 1), 0.3)
    x = 0.3 * stills + 0.7 * torch.randn(stills.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = x + 0.7 * model.eval()(x, t, contexts)  # x_t + (1 - t) v
    assert (clean[0].mean() - 1.5).abs() < 0.5 and (clean[1].mean() + 1.5).abs() < 0.5


def test_image_objective_weighs_where_moving_things_start(monkeypatch):
    import magi.training.objectives as objectives
    from magi.config import ImageConfig

    base = tiny_cfg()
    cfg = replace(base, image=ImageConfig(dit=replace(base.dit, chunk_frames=1, patch_size=1)),
                  train=replace(base.train, motion_weight=3.0))
    stills, contexts, masks = torch.randn(2, 4, 1, 4, 4), torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    motion = torch.zeros(2, 1, 1, 4, 4, dtype=torch.bool)
    motion[:, :, :, 1, 2] = True
    seen = {}
    monkeypatch.setattr(objectives, "flow_loss", lambda *args: seen.update(weight=args[5]) or torch.zeros(()))
    objectives.image_objective(stills, contexts, masks, cfg, motion=motion)(DiT(cfg.image.dit), 0)
    weight = seen["weight"]
    assert weight.shape == (3, 1, 1, 4, 4)
    assert torch.all(weight[:, :, :, 1, 2] == 4.0) and weight.sum() == 3 * (15 + 4)
    objectives.image_objective(stills, contexts, masks, base)(DiT(cfg.image.dit), 0)
    assert seen["weight"] is None  # motion_weight 0: the plain mean
    with pytest.raises(ValueError, match="motion cells"):
        objectives.image_objective(stills, contexts, masks, cfg)

from dataclasses import replace

import pytest
import torch

from conftest import randomize_
from magi.flow.schedule import time_grid
from magi.flow.shortcut import grid_steps, two_step_target
from magi.models.dit import DiT
from magi.sampling.sampler import generate
from magi.training.runs import init_student_from_teacher


@pytest.mark.parametrize("steps", [8, 16, 32, 64])
def test_grid_steps_split_each_coarse_step_into_two_fine_ones(steps):
    coarse = time_grid(steps, 3.0)
    t = torch.tensor([0.0, 0.013, 0.5, 0.97, 0.999999, 1.0])
    t_k, d1, d2 = grid_steps(t, steps, 3.0)
    assert torch.all(t_k <= t) and torch.all(d1[:-1] > 0) and torch.all(d2[:-1] > 0)
    for tk, full in zip(t_k[:-1].double(), (d1 + d2)[:-1].double()):
        k = int(torch.argmin((coarse - tk).abs()))
        assert float(coarse[k]) == pytest.approx(float(tk), abs=1e-6)  # snapped onto the coarse grid
        assert float(coarse[k + 1] - coarse[k]) == pytest.approx(float(full), abs=1e-6)
    assert t_k[-1] == 1 and d1[-1] == 0 and d2[-1] == 0  # clean frames stay clean


def test_two_half_steps_on_analytic_fields():
    x = torch.randn(2, 3, 4, 2, 2)
    t = torch.full((2, 4), 0.2)
    d1, d2 = torch.full((2, 4), 0.1), torch.full((2, 4), 0.3)
    constant = torch.randn_like(x)
    torch.testing.assert_close(two_step_target(lambda x, t, d: constant, x, t, d1, d2), constant)
    # v(x) = x: two Euler steps give x -> x (1 + d1)(1 + d2), i.e. an average velocity of that / (d1 + d2)
    target = two_step_target(lambda x, t, d: x, x, t, d1, d2)
    torch.testing.assert_close(target, x * ((1.1 * 1.3) - 1) / 0.4)
    # as d -> 0 the target is the instantaneous velocity (the flow-matching target)
    tiny = torch.full((2, 4), 1e-7)
    torch.testing.assert_close(two_step_target(lambda x, t, d: x * (1 + t[:, None, :, None, None]), x, t, tiny,
                                               tiny), x * 1.2)


def test_fresh_student_equals_teacher_and_shortcut_sampling_equals_euler(dit_cfg, sampler_cfg):
    teacher = randomize_(DiT(dit_cfg), std=0.05).eval()
    student = DiT(replace(dit_cfg, step_conditioning=True)).eval()
    init_student_from_teacher(student, teacher.state_dict(), "teacher")
    x, t, ctx = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 4), torch.randn(1, 3, 24)
    torch.testing.assert_close(student(x, t, ctx, step_size=torch.rand(1, 4)), teacher(x, t, ctx))
    shape = (dit_cfg.in_channels, 8, 8)
    mask = torch.ones(1, 3, dtype=torch.bool)
    a = generate(teacher, replace(sampler_cfg, guidance="none"), ctx, mask, num_chunks=2, latent_shape=shape)
    b = generate(student, replace(sampler_cfg, guidance="none", solver="shortcut"), ctx, mask, num_chunks=2,
                 latent_shape=shape)
    torch.testing.assert_close(a, b)
    # once trained, the step size matters
    with torch.no_grad():
        student.step_embed[2].weight.normal_()
    c = generate(student, replace(sampler_cfg, guidance="none", solver="shortcut"), ctx, mask, num_chunks=2,
                 latent_shape=shape)
    assert not torch.allclose(b, c)


def test_student_rejects_a_teacher_with_other_keys(dit_cfg):
    from magi.errors import InputError

    student = DiT(replace(dit_cfg, step_conditioning=True))
    state = DiT(dit_cfg).state_dict()
    state.pop("final_proj.weight")
    with pytest.raises(InputError, match="final_proj.weight"):
        init_student_from_teacher(student, state, "teacher")



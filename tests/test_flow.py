import torch

from magi.flow.matching import interpolate
from magi.flow.schedule import shift_time, time_grid


def test_interpolation_endpoints_and_velocity():
    g = torch.Generator().manual_seed(0)
    data, noise = torch.randn(2, 3, 4, 2, 2, generator=g), torch.randn(2, 3, 4, 2, 2, generator=g)
    assert torch.equal(interpolate(data, noise, torch.zeros(2, 4)).x_t, noise)
    assert torch.equal(interpolate(data, noise, torch.ones(2, 4)).x_t, data)
    t = torch.rand(2, 4, generator=g)
    path = interpolate(data, noise, t)
    # one exact Euler step along the true velocity lands on the data
    landed = path.x_t + (1 - t)[:, None, :, None, None] * path.velocity
    torch.testing.assert_close(landed, data)


def test_time_grid_monotone_with_exact_endpoints():
    for shift in (1.0, 3.0, 0.5):
        grid = time_grid(16, shift)
        assert grid[0] == 0 and grid[-1] == 1
        assert torch.all(grid[1:] > grid[:-1])
    assert torch.allclose(time_grid(4, 1.0), torch.linspace(0, 1, 5, dtype=torch.float64))
    # shift > 1 keeps more steps at high noise (small t)
    assert time_grid(16, 3.0)[8] < time_grid(16, 1.0)[8]
    assert shift_time(torch.tensor(0.5), 1.0) == 0.5

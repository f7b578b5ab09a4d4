"""The Hawk block: its parallel scan is its step-by-step recurrence, episode by episode."""

import pytest
import torch

from agents.internal_rl.ssm import RecurrentBlock, episode_keep, linear_scan


@pytest.mark.parametrize("steps", [1, 2, 7, 64, 100])
def test_linear_scan_equals_the_recurrence(steps: int) -> None:
    generator = torch.Generator().manual_seed(steps)
    a = torch.rand(3, steps, 5, generator=generator)
    b = torch.randn(3, steps, 5, generator=generator)
    h, expected = torch.zeros(3, 5), []
    for t in range(steps):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    torch.testing.assert_close(linear_scan(a, b), torch.stack(expected, dim=1))


@pytest.mark.parametrize("steps", [1, 2, 7, 33])
def test_linear_scan_gradients_are_the_recurrences(steps: int) -> None:
    generator = torch.Generator().manual_seed(steps)
    a = torch.rand(2, steps, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, steps, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(linear_scan, (a, b))
    weights = torch.randn(2, steps, 3, generator=generator, dtype=torch.float64)
    (linear_scan(a, b) * weights).sum().backward()
    scan_grads = a.grad, b.grad
    a.grad = b.grad = None
    h, states = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(steps):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    (torch.stack(states, dim=1) * weights).sum().backward()
    torch.testing.assert_close(scan_grads, (a.grad, b.grad))


def test_episode_keep_marks_episode_starts() -> None:
    segments = torch.tensor([[0, 0, 1, 1, 1, 2]])
    assert episode_keep(segments).tolist() == [[0.0, 1.0, 0.0, 1.0, 1.0, 0.0]]


def test_block_on_packed_episodes_equals_stepping_each_episode() -> None:
    torch.manual_seed(0)
    block = RecurrentBlock(width=16, mlp_width=32)
    lengths = [5, 1, 9, 2]  # packed in one window, in order
    segments = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    x = torch.randn(1, sum(lengths), 16)
    whole = block(x, episode_keep(segments))
    stepped, start = [], 0
    for n in lengths:
        cache: dict = {}
        for t in range(start, start + n):
            stepped.append(block(x[:, t : t + 1], None, cache)[:, 0])
        start += n
    torch.testing.assert_close(whole[0], torch.cat(stepped), rtol=1e-5, atol=1e-5)


def test_an_earlier_episode_does_not_reach_a_later_one() -> None:
    torch.manual_seed(1)
    block = RecurrentBlock(width=8, mlp_width=16)
    segments = torch.tensor([[0] * 6 + [1] * 6])
    x = torch.randn(1, 12, 8)
    changed = x.clone()
    changed[:, :6] += 1.0
    keep = episode_keep(segments)
    torch.testing.assert_close(block(x, keep)[:, 6:], block(changed, keep)[:, 6:])
    assert not torch.allclose(block(x, keep)[:, :6], block(changed, keep)[:, :6])


def test_gradients_are_finite_for_slow_and_fast_decays() -> None:
    torch.manual_seed(2)
    block = RecurrentBlock(width=8, mlp_width=16)
    with torch.no_grad():
        block.lru.decay_logit[:4] = 20.0  # a -> 1: the sqrt(1 - a^2) scale at its bound
        block.lru.decay_logit[4:] = -20.0  # a -> 0
    x = torch.randn(2, 50, 8, requires_grad=True)
    block(x, torch.ones(2, 50)).square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters())
    assert torch.isfinite(x.grad).all()

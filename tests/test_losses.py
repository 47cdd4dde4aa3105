import math

import pytest
import torch

from hfssl.losses import nt_xent

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)


def nt_xent_by_hand(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """Chen et al. 2020, eq. (1), written as the paper states it: a loop over the 2N anchors."""
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        numerator = torch.exp(z[i] @ z[positive] / tau)
        denominator = sum(torch.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
        total = total - torch.log(numerator / denominator)
    return total / (2 * n)


def test_nt_xent_matches_known_value_for_orthogonal_pairs():
    # Two images whose views coincide and are orthogonal to each other: for each anchor the
    # positive has similarity 1 and the two negatives 0, so loss = -log(e^(1/t) / (e^(1/t) + 2)).
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    assert abs(nt_xent(z1, z1.clone(), tau).item() - expected) < 1e-6


def test_nt_xent_matches_hand_computation_and_gradients():
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = nt_xent(z1, z2, tau=0.2)
    reference = nt_xent_by_hand(z1, z2, tau=0.2)
    torch.testing.assert_close(loss, reference)
    grads = torch.autograd.grad(loss, (z1, z2))
    reference_grads = torch.autograd.grad(reference, (z1, z2))
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.2), (z1, z2))


def test_nt_xent_is_scale_invariant_and_rejects_bad_shapes():
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(nt_xent(z1, z2), nt_xent(3 * z1, 0.5 * z2))
    try:
        nt_xent(z1, z2[:3])
    except ValueError as error:
        assert "(B, D)" in str(error)
    else:
        raise AssertionError("mismatched shapes must raise")

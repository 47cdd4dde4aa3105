"""2 processes (gloo) against 1 process on the concatenated batch."""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import WORLD, free_port, init_gloo, spawn_processes

from hfssl.augment import simclr_view_generator
from hfssl.distributed import all_reduce_mean, all_reduce_sum, gather, gather_with_offset, world_size
from hfssl.losses import clip_loss, nt_xent

UNEQUAL_SIZES = [[3, 5]]  # per-process row counts of the unequal-batch gather


def _full_images(sizes):
    return torch.randint(
        0, 256, (sum(sizes), 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )


def _views(images):
    torch.manual_seed(11)  # as the Trainer seeds every process alike
    return simclr_view_generator(8)(images)


def _full_batch(sizes):
    generator = torch.Generator().manual_seed(1)
    total = sum(sizes)
    return torch.randn(total, 6, generator=generator, dtype=torch.float64), torch.randn(
        total, 6, generator=generator, dtype=torch.float64
    )


def _nt_xent_case(rank: int, sizes):
    """This process's share of ``sizes`` rows: its nt_xent loss and input gradients, the gathered rows
    and its views."""
    z1, z2 = _full_batch(sizes)
    start = sum(sizes[:rank])
    local1 = z1[start : start + sizes[rank]].clone().requires_grad_(True)
    local2 = z2[start : start + sizes[rank]].clone().requires_grad_(True)
    loss = nt_xent(local1, local2, tau=0.3)
    loss.backward()
    gathered = gather(local1.detach())
    views = _views(_full_images(sizes)[start : start + sizes[rank]])
    return {
        "loss": loss.detach(),
        "grad1": local1.grad,
        "grad2": local2.grad,
        "gathered": gathered,
        "world": world_size(),
        "views": views,
    }


def test_gathered_nt_xent_equals_single_process_loss_and_gradients(two_process_results):
    sizes = [4, 4]
    results = [r["nt_xent"][tuple(sizes)] for r in two_process_results]
    z1, z2 = _full_batch(sizes)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    full_loss = nt_xent(z1, z2, tau=0.3)
    full_loss.backward()

    assert all(r["world"] == WORLD for r in results)
    torch.testing.assert_close(results[0]["gathered"], z1.detach())
    # DDP averages per-process losses and gradients: the mean of the local losses is the full loss,
    # and each process's input gradient, divided by the world size, is the full-batch gradient.
    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert abs(mean_loss.item() - full_loss.item()) < 1e-5
    grad1 = torch.cat([r["grad1"] for r in results]) / WORLD
    grad2 = torch.cat([r["grad2"] for r in results]) / WORLD
    torch.testing.assert_close(grad1, z1.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad2, z2.grad, atol=1e-5, rtol=0)
    # each process makes different views, exactly those of one process on the concatenated batch
    full_views = _views(_full_images(sizes))
    for view in range(2):
        torch.testing.assert_close(torch.cat([r["views"][view] for r in results]), full_views[view])


@pytest.mark.parametrize("sizes", UNEQUAL_SIZES)
def test_gather_handles_unequal_batches(two_process_results, sizes):
    results = [r["nt_xent"][tuple(sizes)] for r in two_process_results]
    z1, _ = _full_batch(sizes)
    for r in results:
        torch.testing.assert_close(r["gathered"], z1)


def _word2vec_model_and_rows():
    from hfssl import Word2VecConfig, Word2VecModel

    torch.manual_seed(5)
    model = Word2VecModel(Word2VecConfig(vocab_size=30, vector_size=6))
    with torch.no_grad():
        model.output_embeddings.weight.normal_(0, 0.3)  # non-zero, so that every gradient term is exercised
    generator = torch.Generator().manual_seed(6)
    rows = {
        "center_ids": torch.randint(1, 30, (16,), generator=generator),
        "context_ids": torch.randint(1, 30, (16,), generator=generator),
        "negative_ids": torch.randint(1, 30, (16, 5), generator=generator),
    }
    return model, rows


def _word2vec_case(rank: int):
    """This process's gradients of a DDP-wrapped word2vec model on its half of the rows."""
    from torch.nn.parallel import DistributedDataParallel

    model, rows = _word2vec_model_and_rows()
    ddp = DistributedDataParallel(model)
    local = {name: value[rank * 8 : (rank + 1) * 8] for name, value in rows.items()}
    loss = ddp(**local).loss * WORLD  # what Word2VecTrainer.compute_loss does
    loss.backward()
    gradients = {name: p.grad for name, p in model.named_parameters()}
    del ddp  # release DDP's reducer (it holds the process group) before the group goes
    dist.barrier()
    return gradients


def test_word2vec_gradients_over_two_processes_equal_the_summed_single_process_gradients(two_process_results):
    """DDP averages gradients; Word2VecTrainer multiplies the loss by the world size so that the
    step adds every pair's update, as one process on the whole batch does."""
    results = [r["word2vec"] for r in two_process_results]
    model, rows = _word2vec_model_and_rows()
    model(**rows).loss.backward()
    for name, parameter in model.named_parameters():
        for result in results:  # every process holds the same all-reduced gradient
            torch.testing.assert_close(result[name], parameter.grad, atol=1e-6, rtol=1e-5)


# Losses that mix samples across processes, written once for both sides: at world size 1 every
# collective is an identity, so the single-process call on the concatenated batch is the reference.
# Each takes its sum collective as an argument so that a deliberately wrong one can be swapped in.


def _shared_weight() -> torch.Tensor:
    """A (6, 4) projection, the shared parameter whose DDP-averaged gradient the tests compare."""
    return torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64).requires_grad_(True)


def _barlow_twins_like(x1, x2, weight, reduce_sum=all_reduce_sum, standardise=True):
    """Barlow Twins (Zbontar et al. 2021, eq. 1) on ``x @ weight``: embeddings standardised with the
    global batch mean and variance (unless ``standardise`` is False), C = (sum over processes of
    z1_local.T @ z2_local) / N_global. Sums of rows and counts, so it holds for unequal batches."""

    def summed(tensor):
        return reduce_sum(tensor, differentiable=True)

    n_global = all_reduce_sum(torch.tensor(float(x1.shape[0]), dtype=x1.dtype))

    def standardised(z):
        mean = summed(z.sum(0)) / n_global
        variance = summed((z - mean).pow(2).sum(0)) / n_global
        return (z - mean) / variance.sqrt()

    z1, z2 = x1 @ weight, x2 @ weight
    if standardise:
        z1, z2 = standardised(z1), standardised(z2)
    c = summed(z1.T @ z2) / n_global  # (4, 4)
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on_diagonal + 0.5 * off_diagonal


def _vicreg_like(x1, x2, weight):
    """VICReg's variance and covariance terms (Bardes et al. 2022, eqs. 1-4) with the batch statistics
    from ``all_reduce_mean`` of per-process means (equal per-process batches), plus the invariance term."""
    z = x1 @ weight
    mean = all_reduce_mean(z.mean(0), differentiable=True)
    centred = z - mean
    covariance = all_reduce_mean(centred.T @ centred / z.shape[0], differentiable=True)  # (4, 4), biased
    std = torch.sqrt(torch.diagonal(covariance) + 1e-4)
    variance_term = torch.relu(1 - std).mean() + (std - 0.5).pow(2).mean()  # second term: std near 1 too
    covariance_term = (covariance - torch.diag(torch.diagonal(covariance))).pow(2).sum() / z.shape[1]
    invariance = all_reduce_mean((z - x2 @ weight).pow(2).mean(), differentiable=True)
    return variance_term + covariance_term + invariance


def _clip_like(x1, x2, weight):
    """CLIP's symmetric InfoNCE (Radford et al. 2021, fig. 3): local rows scored against gathered rows,
    labels from ``gather_with_offset``. Per process the summed cross entropy times P / (2 N_global),
    so that the mean over processes is the global mean even for unequal batches."""
    a, b = x1 @ weight, x2 @ weight
    all_a, offset = gather_with_offset(a)
    all_b, offset_b = gather_with_offset(b)
    assert offset == offset_b
    labels = torch.arange(a.shape[0]) + offset
    total = F.cross_entropy(a @ all_b.T, labels, reduction="sum") + F.cross_entropy(
        b @ all_a.T, labels, reduction="sum"
    )
    return total * world_size() / (2 * all_a.shape[0])


class _NonSummingAllReduce(torch.autograd.Function):
    """The wrong backward: the sum over processes forward, the incoming gradient returned unchanged.
    Each process then differentiates only its own loss: through a single collective DDP's average is
    1 / P of the gradient, through nested ones it points elsewhere too."""

    @staticmethod
    def forward(ctx, tensor):
        reduced = tensor.clone()
        dist.all_reduce(reduced)
        return reduced

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def _non_summing_all_reduce_sum(tensor, differentiable=True):
    return _NonSummingAllReduce.apply(tensor) if world_size() > 1 else tensor


_CASES = {  # name: (loss, per-process row counts)
    "barlow_twins": (_barlow_twins_like, [3, 5]),
    # one collective only (no global standardisation), so the wrong backward's error is a pure scale
    "cross_correlation": (lambda x1, x2, weight: _barlow_twins_like(x1, x2, weight, standardise=False), [3, 5]),
    "cross_correlation_wrong_backward": (
        lambda x1, x2, weight: _barlow_twins_like(x1, x2, weight, _non_summing_all_reduce_sum, standardise=False),
        [3, 5],
    ),
    "barlow_twins_wrong_backward": (
        lambda x1, x2, weight: _barlow_twins_like(x1, x2, weight, _non_summing_all_reduce_sum),
        [3, 5],
    ),
    "vicreg": (_vicreg_like, [4, 4]),
    "clip": (_clip_like, [3, 5]),
    # hfssl.losses.clip_loss itself, its temperature t = weight[0, 0] (so the shared gradient holds t's too)
    "clip_loss": (lambda x1, x2, weight: clip_loss(x1 @ weight, x2 @ weight, weight[0, 0].exp()), [3, 5]),
    "clip_loss_equal": (lambda x1, x2, weight: clip_loss(x1 @ weight, x2 @ weight, weight[0, 0].exp()), [4, 4]),
    "clip_local_loss": (
        lambda x1, x2, weight: clip_loss(x1 @ weight, x2 @ weight, weight[0, 0].exp(), local_loss=True),
        [3, 5],
    ),
    "clip_local_loss_equal": (
        lambda x1, x2, weight: clip_loss(x1 @ weight, x2 @ weight, weight[0, 0].exp(), local_loss=True),
        [4, 4],
    ),
}


def _loss_and_gradients(loss_fn, x1, x2):
    """Loss, the shared weight's gradient and the inputs' gradients, on these rows."""
    weight = _shared_weight()
    x1, x2 = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    loss = loss_fn(x1, x2, weight)
    loss.backward()
    return {"loss": loss.detach(), "weight": weight.grad, "x1": x1.grad, "x2": x2.grad}


class _CountCalls:
    """Wraps a ``torch.distributed`` collective and counts its calls."""

    def __init__(self, name):
        self.name, self.original, self.calls = name, getattr(dist, name), 0
        setattr(dist, name, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.original(*args, **kwargs)

    def restore(self):
        setattr(dist, self.name, self.original)


def _collectives_case(rank: int):
    """This process's side of every _CASES loss, of gather_with_offset and of the collectives' call counts."""
    results = {}
    for name, (loss_fn, sizes) in _CASES.items():
        x1, x2 = _full_batch(sizes)
        start = sum(sizes[:rank])
        results[name] = _loss_and_gradients(loss_fn, x1[start : start + sizes[rank]], x2[start : start + sizes[rank]])

    local = torch.arange(3.0 if rank == 0 else 5.0, dtype=torch.float64).add(10 * rank)[:, None].repeat(1, 2)
    gather_calls = _CountCalls("all_gather")
    gathered, offset = gather_with_offset(local)
    results["offset"] = {"gathered": gathered, "offset": torch.tensor(offset), "all_gathers": gather_calls.calls}

    z1, z2 = (rows[: 3 + 2 * rank].clone().requires_grad_(True) for rows in _full_batch([3, 5]))
    gather_calls.calls = 0
    reduce_calls = _CountCalls("all_reduce")
    loss = nt_xent(z1, z2, tau=0.3)
    forward_gathers = gather_calls.calls
    loss.backward()
    gather_calls.restore()
    reduce_calls.restore()
    results["nt_xent_calls"] = {"all_gathers": forward_gathers, "all_reduces": reduce_calls.calls}

    value = torch.tensor([1.0, 2.0], dtype=torch.float64).mul(rank + 1).requires_grad_(True)
    results["no_gradient"] = {"sum": all_reduce_sum(value), "mean": all_reduce_mean(value)}
    return results


def _worker(rank: int, port: int, result_path: str):
    """Every 2-process case of this file in one process group (process start-up dominates the cost)."""
    init_gloo(rank, port)
    try:
        results = {
            "nt_xent": {tuple(sizes): _nt_xent_case(rank, sizes) for sizes in ([4, 4], *UNEQUAL_SIZES)},
            "word2vec": _word2vec_case(rank),
            "collectives": _collectives_case(rank),
        }
        torch.save(results, f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    """One 2-process run of every case of this file: per rank, a dict of the cases' results."""
    result_path = str(tmp_path_factory.mktemp("two_processes") / "result")
    spawn_processes(_worker, (free_port(), result_path))
    return [torch.load(f"{result_path}.{rank}", weights_only=True) for rank in range(WORLD)]


@pytest.fixture(scope="module")
def collective_results(two_process_results):
    return [r["collectives"] for r in two_process_results]


def _single_process(name):
    loss_fn, sizes = _CASES[name]
    return _loss_and_gradients(loss_fn, *_full_batch(sizes))


def _ddp_averaged(results, name):
    """What DDP would hold: the mean of the per-process losses and of the shared weight's gradients,
    and each process's input gradients divided by P (its rows' share of the averaged update)."""
    per_process = [r[name] for r in results]
    return {
        "loss": sum(r["loss"] for r in per_process) / WORLD,
        "weight": sum(r["weight"] for r in per_process) / WORLD,
        "x1": torch.cat([r["x1"] for r in per_process]) / WORLD,
        "x2": torch.cat([r["x2"] for r in per_process]) / WORLD,
    }


def _assert_matches(averaged, single):
    for key in ("loss", "weight", "x1", "x2"):
        torch.testing.assert_close(averaged[key], single[key], atol=1e-10, rtol=1e-10, msg=key)


@pytest.mark.parametrize(
    "name",
    [
        "barlow_twins", "cross_correlation", "vicreg", "clip",
        "clip_loss", "clip_loss_equal", "clip_local_loss", "clip_local_loss_equal",
    ],
)  # fmt: skip
def test_differentiable_collectives_give_the_concatenated_batch_loss_and_gradients(collective_results, name):
    """Barlow Twins-like with and without global standardisation (all_reduce_sum, 3 + 5 rows),
    VICReg-like (all_reduce_mean, 4 + 4 rows), CLIP-like (gather_with_offset, 3 + 5 rows) losses and
    hfssl's clip_loss (gathered, and local rows against gathered columns; 3 + 5 and 4 + 4 rows)
    on 2 processes against 1 process."""
    single = _single_process(name)
    assert single["weight"].norm() > 1e-3 and single["x1"].norm() > 1e-3  # a gradient to compare
    if name not in ("clip", "clip_local_loss", "clip_local_loss_equal"):  # the same on every process
        for result in collective_results:
            torch.testing.assert_close(result[name]["loss"], single["loss"], atol=1e-10, rtol=1e-10)
    _assert_matches(_ddp_averaged(collective_results, name), single)


def test_a_backward_that_does_not_sum_over_processes_is_caught(collective_results):
    """Through a single collective, a non-summing backward's gradient points the right way but is
    1 / P too small: only a comparison of magnitudes catches it, and it passes for all_reduce_sum.
    (Through nested collectives, as the standardised Barlow Twins case, the direction is off too.)"""
    single = _single_process("cross_correlation")
    right = _ddp_averaged(collective_results, "cross_correlation")
    wrong = _ddp_averaged(collective_results, "cross_correlation_wrong_backward")
    torch.testing.assert_close(wrong["loss"], single["loss"], atol=1e-10, rtol=1e-10)  # forward alike
    for key in ("weight", "x1", "x2"):
        assert F.cosine_similarity(wrong[key].flatten(), single[key].flatten(), dim=0) > 1 - 1e-10
        assert abs(wrong[key].norm() / single[key].norm() - 1 / WORLD) < 1e-10
        assert abs(right[key].norm() / single[key].norm() - 1) < 1e-10
    with pytest.raises(AssertionError):
        _assert_matches(wrong, single)
    _assert_matches(right, single)

    nested_single = _single_process("barlow_twins")
    nested_wrong = _ddp_averaged(collective_results, "barlow_twins_wrong_backward")
    cosine = F.cosine_similarity(nested_wrong["weight"].flatten(), nested_single["weight"].flatten(), dim=0)
    assert cosine < 0.99
    with pytest.raises(AssertionError):
        _assert_matches(nested_wrong, nested_single)


def test_gather_with_offset_returns_each_process_first_row_with_one_size_exchange(collective_results):
    # rank 0 holds rows 0, 1, 2 and rank 1 rows 10, ..., 14 (values 10 * rank + index)
    expected = torch.cat([torch.arange(3.0), torch.arange(5.0) + 10]).to(torch.float64)[:, None].repeat(1, 2)
    for rank, result in enumerate(collective_results):
        gathered, offset = result["offset"]["gathered"], int(result["offset"]["offset"])
        torch.testing.assert_close(gathered, expected, atol=0, rtol=0)
        assert offset == [0, 3][rank]
        torch.testing.assert_close(
            gathered[offset : offset + [3, 5][rank], 0], torch.arange([3, 5][rank]) + 10.0 * rank, check_dtype=False
        )
        assert result["offset"]["all_gathers"] == 2  # the row counts once, then the rows
        # nt_xent: both views in one gather (counts + rows), one all-reduce in the backward
        assert result["nt_xent_calls"] == {"all_gathers": 2, "all_reduces": 1}


def test_all_reduce_without_gradient_is_detached(collective_results):
    for result in collective_results:
        sum_, mean = result["no_gradient"]["sum"], result["no_gradient"]["mean"]
        torch.testing.assert_close(sum_, torch.tensor([3.0, 6.0], dtype=torch.float64))
        torch.testing.assert_close(mean, torch.tensor([1.5, 3.0], dtype=torch.float64))
        assert not sum_.requires_grad and not mean.requires_grad


def test_collectives_are_identities_without_a_process_group():
    assert not dist.is_initialized()
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    gathered, offset = gather_with_offset(x)
    assert gathered is x and offset == 0 and gather(x) is x
    for reduce in (all_reduce_sum, all_reduce_mean):
        assert reduce(x, differentiable=True) is x
        detached = reduce(x)
        assert not detached.requires_grad and torch.equal(detached, x.detach())

"""2 processes (gloo) against 1 process on the concatenated batch."""

import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hfssl.augment import simclr_view_generator
from hfssl.distributed import gather, world_size
from hfssl.losses import nt_xent

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _worker(rank: int, port: int, sizes, result_path: str):
    _init(rank, port)
    try:
        z1, z2 = _full_batch(sizes)
        start = sum(sizes[:rank])
        local1 = z1[start : start + sizes[rank]].clone().requires_grad_(True)
        local2 = z2[start : start + sizes[rank]].clone().requires_grad_(True)
        loss = nt_xent(local1, local2, tau=0.3)
        loss.backward()
        gathered = gather(local1.detach())
        views = _views(_full_images(sizes)[start : start + sizes[rank]])
        torch.save(
            {
                "loss": loss.detach(),
                "grad1": local1.grad,
                "grad2": local2.grad,
                "gathered": gathered,
                "world": world_size(),
                "views": views,
            },
            f"{result_path}.{rank}",
        )
    finally:
        dist.destroy_process_group()


def _spawn(worker, args, timeout: float = 120.0) -> None:
    """``mp.spawn`` with a deadline: a process that hangs (a collective waiting for a peer that has
    gone) fails the test instead of hanging the suite."""
    context = mp.start_processes(worker, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{worker.__name__} did not finish within {timeout:.0f} s")


def _init(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))


def _run(tmp_path, sizes):
    result_path = str(tmp_path / "result")
    _spawn(_worker, (_free_port(), sizes, result_path))
    return [torch.load(f"{result_path}.{rank}", weights_only=True) for rank in range(WORLD)]


def test_gathered_nt_xent_equals_single_process_loss_and_gradients(tmp_path):
    sizes = [4, 4]
    results = _run(tmp_path, sizes)
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


@pytest.mark.parametrize("sizes", [[3, 5]])
def test_gather_handles_unequal_batches(tmp_path, sizes):
    results = _run(tmp_path, sizes)
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


def _word2vec_worker(rank: int, port: int, result_path: str):
    from torch.nn.parallel import DistributedDataParallel

    _init(rank, port)
    try:
        model, rows = _word2vec_model_and_rows()
        ddp = DistributedDataParallel(model)
        local = {name: value[rank * 8 : (rank + 1) * 8] for name, value in rows.items()}
        loss = ddp(**local).loss * WORLD  # what Word2VecTrainer.compute_loss does
        loss.backward()
        torch.save({name: p.grad for name, p in model.named_parameters()}, f"{result_path}.{rank}")
        del ddp  # release DDP's reducer (it holds the process group) before the group goes
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_word2vec_gradients_over_two_processes_equal_the_summed_single_process_gradients(tmp_path):
    """DDP averages gradients; Word2VecTrainer multiplies the loss by the world size so that the
    step adds every pair's update, as one process on the whole batch does."""
    result_path = str(tmp_path / "w2v")
    _spawn(_word2vec_worker, (_free_port(), result_path))
    results = [torch.load(f"{result_path}.{rank}", weights_only=True) for rank in range(WORLD)]
    model, rows = _word2vec_model_and_rows()
    model(**rows).loss.backward()
    for name, parameter in model.named_parameters():
        for result in results:  # every process holds the same all-reduced gradient
            torch.testing.assert_close(result[name], parameter.grad, atol=1e-6, rtol=1e-5)

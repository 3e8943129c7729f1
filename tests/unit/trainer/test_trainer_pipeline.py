"""Batches from a data set held on the device are the DataLoader's batches, bit for bit.

Both paths run on CPU here; the CUDA ones (the DataLoader's copies prefetched on a side stream,
the data in GPU memory) run where a GPU is (PIVOT_TEST_DEVICE is not needed: torch sees it).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, TensorDataset

from pivot_trainer.data import make_datasets
from pivot_trainer.pipeline import (
    DEVICE_DATA_FRACTION,
    DeviceData,
    HostData,
    binary,
    choose,
    device_bytes,
    epoch_order,
    shard,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def _dataset(n: int = 37) -> TensorDataset:
    return make_datasets(num_train=n, num_val=1, size=16, seed=5)[0]


def _assert_same_batches(
    got: list[tuple[torch.Tensor, torch.Tensor]], want: list[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    assert len(got) == len(want)
    for (gx, gy), (wx, wy) in zip(got, want, strict=True):
        assert gx.dtype == wx.dtype and gy.dtype == wy.dtype
        assert gx.device == wx.device and gy.device == wy.device
        assert torch.equal(gx, wx) and torch.equal(gy, wy)
        assert gx.is_contiguous(memory_format=torch.channels_last) == wx.is_contiguous(
            memory_format=torch.channels_last
        )


@pytest.mark.parametrize("world", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_device_batches_are_the_dataloaders_for_every_rank_and_resume_point(
    world: int, channels_last: bool
) -> None:
    dataset = _dataset()
    host = HostData(dataset, CPU, 8, channels_last=channels_last)
    device = DeviceData(dataset, CPU, 8, channels_last)
    for epoch in (1, 2):
        for rank in range(world):
            mine = shard(epoch_order(7, epoch, len(dataset)), rank, world)
            for done_steps in (0, 1, 2):  # a mid-epoch resume skips the batches done
                todo = mine[done_steps * 8 :]
                got, want = list(device.batches(todo)), list(host.batches(todo))
                assert len(want) == -(-len(todo) // 8)  # the last batch shorter, not dropped
                _assert_same_batches(got, want)


def test_the_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    assert torch.equal(epoch_order(7, 3, 50), epoch_order(7, 3, 50))
    assert not torch.equal(epoch_order(7, 3, 50), epoch_order(7, 4, 50))
    assert not torch.equal(epoch_order(7, 3, 50), epoch_order(8, 3, 50))
    torch.manual_seed(0)
    first = epoch_order(1, 1, 20)
    torch.manual_seed(1)
    assert torch.equal(first, epoch_order(1, 1, 20))  # the global generator plays no part
    assert sorted(first.tolist()) == list(range(20))


@pytest.mark.parametrize(("n", "world"), [(10, 3), (12, 4), (5, 2), (7, 1)])
def test_shards_pad_and_interleave_as_distributed_sampler_does(n: int, world: int) -> None:
    order = epoch_order(3, 1, n)
    for rank in range(world):
        positions = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
        assert shard(order, rank, world).tolist() == [int(order[i]) for i in positions]


def test_masks_are_held_in_a_byte_a_pixel_only_where_that_is_exact() -> None:
    dataset = _dataset(9)
    held = DeviceData(dataset, CPU, 4, False)
    assert held.masks.dtype == torch.uint8 and binary(dataset.tensors[1])
    images, masks = dataset.tensors
    assert device_bytes(dataset) == images.numel() * 4 + masks.numel()

    soft = TensorDataset(images, masks * 0.5)  # not 0/1: kept in float, read back as given
    assert not binary(soft.tensors[1])
    held = DeviceData(soft, CPU, 4, False)
    assert held.masks.dtype == torch.float32
    assert device_bytes(soft) == images.numel() * 4 + masks.numel() * 4
    order = epoch_order(1, 1, 9)
    _assert_same_batches(list(held.batches(order)), list(HostData(soft, CPU, 4).batches(order)))


def test_auto_holds_the_data_on_a_gpu_where_it_fits_a_quarter_of_free_memory() -> None:
    gib = 2**30
    assert choose(True, CPU, 10 * gib, None).on_device  # asked for: on CPU too
    assert not choose(False, CUDA, 1, 100 * gib).on_device
    assert not choose("auto", CPU, 1, None).on_device  # on CPU the DataLoader, as before
    fits = choose("auto", CUDA, int(DEVICE_DATA_FRACTION * 8 * gib), 8 * gib)
    assert fits.on_device and "free on cuda:0" in fits.reason
    over = choose("auto", CUDA, int(DEVICE_DATA_FRACTION * 8 * gib) + 1, 8 * gib)
    assert not over.on_device and "a DataLoader" in over.reason


@needs_cuda
@pytest.mark.parametrize("pin", [False, True])
def test_on_cuda_prefetched_copies_and_device_data_give_the_dataloaders_batches(
    pin: bool,
) -> None:
    dataset = _dataset(53)
    todo = shard(epoch_order(2, 1, len(dataset)), 0, 1)[8:]
    want = [(x.to(CUDA), y.to(CUDA)) for x, y in HostData(dataset, CPU, 8).batches(todo)]
    prefetched = HostData(dataset, CUDA, 8, pin_memory=pin, prefetch=True)
    assert prefetched.prefetch
    _assert_same_batches(list(prefetched.batches(todo)), want)
    _assert_same_batches(list(DeviceData(dataset, CUDA, 8, False).batches(todo)), want)
    # Batches used later than their copy's turn: the side stream's memory is not reused
    # under them (record_stream), so they still hold their data after every copy is done.
    kept = list(prefetched.batches(todo))
    torch.cuda.synchronize()
    _assert_same_batches(kept, want)

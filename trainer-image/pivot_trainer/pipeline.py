"""How batches reach the model: taken by index from a data set held on the training device, or
collated by a DataLoader in host memory and copied over.

Both yield the same batches, in the same order, for the same indices (tests/unit/trainer/
test_trainer_pipeline.py holds them to bit equality), so the epoch's sample order stays a
function of (seed, epoch) and a resumed run takes the batches the uninterrupted one would,
whichever path fed either.

On an H200 the DataLoader path cost 17% of the images/s of a UNet step fed from device memory
(collating and pinning on the host, then a host-to-device copy on the compute stream, issue 15);
held on the device, a batch is one index_select there: no workers, no per-step copy, no host
sync. `data_on_device: auto` does that on CUDA when the data set takes at most
DEVICE_DATA_FRACTION of the free GPU memory; otherwise the DataLoader feeds it, its copies
prefetched on a side stream one batch ahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import DataLoader, TensorDataset

from pivot_trainer.process import ignore_stop_signals

Batch = tuple[torch.Tensor, torch.Tensor]

# The model, its optimizer state and activations need the rest: a UNet of width 16 at 256x256
# in batches of 64 used under 10 GB of an H200's 141 GB (issue 15), and a data set that fills a
# quarter of a 16 GB GPU still leaves such a run room.
DEVICE_DATA_FRACTION = 0.25


class BatchSource(Protocol):
    """A data set that yields (images, masks) batches on the training device."""

    def __len__(self) -> int: ...

    def batches(self, indices: torch.Tensor) -> Iterator[Batch]:
        """Batches of `batch_size` of `indices` (the last one shorter), in their order."""
        ...


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The sample order of 1-based `epoch`: a function of (seed, epoch) alone, so a mid-epoch
    resume skips exactly the batches already done."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's share of an epoch's order, as DistributedSampler does: padded by wrapping
    around so that every rank gets the same number of samples (and so of steps)."""
    if world == 1:
        return order
    padded = torch.cat([order, order[: (-len(order)) % world]])
    return padded[rank::world]


def binary(masks: torch.Tensor) -> bool:
    """Whether one byte a pixel holds these masks exactly (both data sources make 0/1 ones)."""
    return torch.equal(masks.to(torch.uint8).to(masks.dtype), masks)


def device_bytes(dataset: TensorDataset) -> int:
    """What `DeviceData` would take of device memory for this data set."""
    images, masks = dataset.tensors
    mask_bytes = masks.numel() if binary(masks) else masks.numel() * masks.element_size()
    return images.numel() * images.element_size() + mask_bytes


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class DeviceData:
    """A data set held on the training device; a batch is an index_select there."""

    def __init__(
        self, dataset: TensorDataset, device: torch.device, batch_size: int, channels_last: bool
    ) -> None:
        images, masks = dataset.tensors
        self.images = images.to(device)
        self.mask_dtype = masks.dtype
        # Masks in a byte a pixel instead of four: 5 bytes a pixel on the device instead of 8,
        # read back exactly (`binary`); anything else stays as it is.
        small = masks.to(torch.uint8) if binary(masks) else masks
        self.masks = small.to(device)
        self.batch_size, self.channels_last = batch_size, channels_last

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, indices: torch.Tensor) -> Iterator[Batch]:
        # One small copy an epoch, not one a step; from pinned pages, so that it does not wait
        # for the steps already queued (a pageable copy would sync the host with the GPU).
        device = self.images.device
        idx = indices.pin_memory() if device.type == "cuda" else indices
        idx = idx.to(device, non_blocking=True)
        for start in range(0, len(indices), self.batch_size):
            take = idx[start : start + self.batch_size]
            x = _layout(self.images.index_select(0, take), self.channels_last)
            yield x, self.masks.index_select(0, take).to(self.mask_dtype)


class HostData:
    """A data set in host memory, collated by a DataLoader (workers, pinned pages) and copied
    to the device; on CUDA the copy of the next batch runs on a side stream while the current
    one trains."""

    def __init__(
        self,
        dataset: TensorDataset,
        device: torch.device,
        batch_size: int,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        channels_last: bool = False,
        prefetch: bool = True,
    ) -> None:
        self.dataset, self.device, self.batch_size = dataset, device, batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.channels_last = channels_last
        self.prefetch = prefetch and device.type == "cuda"

    def __len__(self) -> int:
        return len(self.dataset)

    def _loader(self, indices: torch.Tensor) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=indices.tolist(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=ignore_stop_signals if self.num_workers else None,
        )

    def batches(self, indices: torch.Tensor) -> Iterator[Batch]:
        loader = self._loader(indices)
        if self.prefetch:
            yield from self._prefetched(loader)
            return
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield _layout(x, self.channels_last), y.to(self.device, non_blocking=True)

    def _prefetched(self, loader: Iterable[Sequence[torch.Tensor]]) -> Iterator[Batch]:
        side = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)

        def copy(batch: Sequence[torch.Tensor]) -> Batch:
            with torch.cuda.stream(side):
                x, y = batch
                return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

        pending: Batch | None = None
        for batch in loader:
            if pending is None:
                pending = copy(batch)
                continue
            main.wait_stream(side)  # the main stream waits for the copies queued so far ...
            ready = self._claim(pending, main)
            pending = copy(batch)  # ... not for this one: it overlaps the step on `ready`
            yield ready
        if pending is not None:
            main.wait_stream(side)
            yield self._claim(pending, main)

    def _claim(self, batch: Batch, main: torch.cuda.Stream) -> Batch:
        x, y = batch
        # Made on the side stream, used on the main one: the allocator must not hand their
        # memory out again until the main stream is done with them.
        x.record_stream(main)
        y.record_stream(main)
        return _layout(x, self.channels_last), y


@dataclass(frozen=True)
class Choice:
    on_device: bool
    reason: str  # said in the trainer's log


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def choose(
    setting: bool | str, device: torch.device, data_bytes: int, free_bytes: int | None
) -> Choice:
    """Where `data_on_device` (true, false or auto) puts a data set of `data_bytes`, with
    `free_bytes` of device memory free (None on CPU)."""
    if setting is True:
        return Choice(True, "data_on_device: true")
    if setting is False:
        return Choice(False, "data_on_device: false")
    if device.type != "cuda" or free_bytes is None:
        return Choice(False, f"data_on_device: auto: a DataLoader on {device.type}")
    budget = DEVICE_DATA_FRACTION * free_bytes
    size = f"{_gib(data_bytes)} of data, {_gib(free_bytes)} free on {device}"
    if data_bytes <= budget:
        return Choice(True, f"data_on_device: auto: {size} (at most {DEVICE_DATA_FRACTION:.0%})")
    return Choice(
        False, f"data_on_device: auto: {size} (over {DEVICE_DATA_FRACTION:.0%}): a DataLoader"
    )


def free_memory(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def make_source(
    dataset: TensorDataset,
    device: torch.device,
    on_device: bool,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    channels_last: bool,
) -> BatchSource:
    if on_device:
        return DeviceData(dataset, device, batch_size, channels_last)
    return HostData(
        dataset,
        device,
        batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        channels_last=channels_last,
    )

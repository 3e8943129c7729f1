"""The CUDA path's decisions and transformations, exercised on CPU (no GPU here)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pivot_trainer.config import ConfigError
from pivot_trainer.losses import build_loss
from pivot_trainer.model import CpuSyncBatchNorm, UNet, convert_sync_batchnorm
from pivot_trainer.train import choose_precision, missing_compiler, pick_device


def test_cpu_trains_in_plain_fp32() -> None:
    p = choose_precision(torch.device("cpu"), bf16_supported=True)
    assert (p.autocast, p.loss_scaling, p.channels_last, p.pin_memory) == (False,) * 4


def test_gpus_with_bf16_autocast_in_bf16_without_loss_scaling() -> None:
    p = choose_precision(torch.device("cuda", 0), bf16_supported=True)
    assert p.autocast and p.dtype == torch.bfloat16 and not p.loss_scaling
    assert p.channels_last and p.pin_memory


def test_older_gpus_autocast_in_fp16_with_a_grad_scaler() -> None:
    p = choose_precision(torch.device("cuda", 0), bf16_supported=False)
    assert p.autocast and p.dtype == torch.float16 and p.loss_scaling


def test_device_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None, local_rank=3) == torch.device("cuda", 3)  # one GPU per process
    assert pick_device("cuda:1", local_rank=3) == torch.device("cuda", 1)  # explicit wins
    assert pick_device("cpu") == torch.device("cpu")


def test_unet_trains_in_channels_last_under_bf16_autocast() -> None:
    # What the CUDA path does to the model and batches, run by CPU kernels.
    torch.manual_seed(0)
    model = UNet(1, 4)
    x = torch.randn(4, 1, 16, 16)
    y = (torch.rand(4, 1, 16, 16) > 0.8).float()
    loss_fn = build_loss("focal", alpha=0.75, gamma=2.0)
    reference = model(x)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    xl = x.to("cpu", non_blocking=True).contiguous(memory_format=torch.channels_last)
    assert xl.is_contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16, True):
        logits = model(xl)
    assert logits.dtype == torch.bfloat16
    loss = loss_fn(logits.float(), y)  # the loss in fp32, as the loop computes it
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(logits.float(), reference, atol=0.1, rtol=0.1)


@pytest.mark.parametrize(("cuda", "kind"), [(True, nn.SyncBatchNorm), (False, CpuSyncBatchNorm)])
def test_sync_batchnorm_conversion_keeps_the_state_dict(cuda: bool, kind: type) -> None:
    model = UNet(1, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted, count = convert_sync_batchnorm(model, cuda=cuda)
    assert count == 10
    assert sum(isinstance(m, kind) for m in converted.modules()) == 10
    after = converted.state_dict()
    assert after.keys() == before.keys()  # checkpoints load into either
    for k, v in before.items():
        torch.testing.assert_close(after[k], v)
    converted.eval()
    assert converted(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)  # eval: no collectives


@pytest.mark.parametrize(
    ("cuda", "found", "env", "missing"),
    [
        (False, {"g++"}, {}, None),
        (False, {"clang++"}, {}, None),
        (False, {"gcc", "cc"}, {}, "C++ compiler"),  # Inductor's CPU kernels are C++
        (False, set(), {"CXX": "/opt/cxx"}, None),
        (True, {"gcc"}, {}, None),
        (True, set(), {"CC": "/opt/cc"}, None),
        (True, {"g++"}, {}, "C compiler for Triton"),
    ],
)
def test_compile_knows_which_compiler_it_needs(
    monkeypatch: pytest.MonkeyPatch,
    cuda: bool,
    found: set[str],
    env: dict[str, str],
    missing: str | None,
) -> None:
    for name in ("CC", "CXX"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    said = missing_compiler(cuda, which=lambda c: f"/usr/bin/{c}" if c in found else None)
    if missing is None:
        assert said is None
    else:
        assert said is not None and missing in said

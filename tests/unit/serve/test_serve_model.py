"""Rebuilding the UNet from checkpoint bytes, and what makes a checkpoint unservable."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

from pivot_trainer.model import UNet
from pivot_trainer.serve.errors import EXIT_UNLOADABLE, CheckpointError
from pivot_trainer.serve.model import Predictor, build


def saved(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def unloadable(data: bytes) -> str:
    with pytest.raises(CheckpointError) as info:
        build(data)
    assert info.value.exit_code == EXIT_UNLOADABLE
    return str(info.value)


def test_a_bare_state_dict_builds_the_same_network() -> None:
    torch.manual_seed(1)
    source = UNet(1, 3).eval()
    loaded = build(saved(source.state_dict()))
    assert loaded.base_channels == 3 and loaded.image_size is None and loaded.epoch is None
    x = torch.randn(2, 1, 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), source(x), rtol=0, atol=0)
    assert not loaded.model.training


def test_the_trainer_payload_gives_width_size_and_epoch() -> None:
    payload = {
        "model": UNet(1, 4).state_dict(),
        "config": {"base_channels": 4, "image_size": 24},
        "epoch": 7,
    }
    loaded = build(saved(payload))
    assert (loaded.base_channels, loaded.image_size, loaded.epoch) == (4, 24, 7)
    predictor = Predictor(loaded, device="cpu", threshold=0.5, max_batch_size=3, compile=False)
    assert predictor.warm_up() > 0
    assert predictor.buckets() == [1, 2, 3] and predictor.padded(3) == 3  # no padding on CPU


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not a checkpoint", "does not load"),
        (saved([1, 2, 3]), "holds no state dict"),
        (saved({"model": {"fc.weight": torch.zeros(2, 2)}}), "holds no UNet weights"),
        (
            saved({"model": UNet(1, 4).state_dict(), "config": {"base_channels": 8}}),
            "do not fit a UNet of width 8",
        ),
    ],
)
def test_what_cannot_be_served_exits_4(data: bytes, needle: str) -> None:
    assert needle in unloadable(data)


def test_a_pickled_object_is_refused_unexecuted() -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("executed",))

    assert "does not load" in unloadable(saved({"model": Boom()}))


def test_compile_without_a_compiler_serves_eagerly_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("CXX", "")
    loaded = build(saved(UNet(1, 2).state_dict()))
    predictor = Predictor(loaded, device="cpu", threshold=0.5, max_batch_size=2, compile=True)
    assert not predictor.compiled and predictor.model is loaded.model
    assert "compile: true, but no C++ compiler" in capsys.readouterr().out
    assert predictor.run([torch.zeros(8, 8).numpy()], want_mask=False).batch_size == 1

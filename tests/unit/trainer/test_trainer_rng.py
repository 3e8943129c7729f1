"""RNG state in checkpoints: saved compactly, restored exactly, older layouts still read."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from pivot_trainer.rng import rng_state, set_rng_state


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_a_saved_rng_state_restores_every_generator_through_torch_load() -> None:
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    _draws()
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    expected = _draws()
    _draws()  # move every generator on
    set_rng_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert _draws() == expected


def test_the_list_layout_of_earlier_checkpoints_still_restores() -> None:
    random.seed(7)
    np.random.seed(8)
    state = rng_state()
    py_version, py_key, py_gauss = random.getstate()
    np_key = np.random.get_state(legacy=False)["state"]["key"]
    # As checkpoints before 2026-11-26 stored them: plain lists of ints.
    state["python"] = (py_version, list(py_key), py_gauss)
    state["numpy"]["key"] = np_key.tolist()
    expected = _draws()
    set_rng_state(state)
    assert _draws() == expected

"""Every random generator a run draws from (Python, NumPy, torch CPU and CUDA): seeded at the
start, saved in checkpoints and restored on resume, so a resumed run draws what the
uninterrupted one would have. And, for `deterministic: true`, kernels that compute the same
numbers every time."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from pivot_trainer.process import prepare_determinism


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)  # CUDA generators too
    np.random.seed(seed % 2**32)
    random.seed(seed)


def make_deterministic() -> None:
    """Same config, seed and hardware, same numbers, at some speed: deterministic kernels
    only (an op that has none raises instead of running nondeterministically), and cuDNN's
    fixed algorithms instead of the fastest one benchmarked at run time."""
    prepare_determinism(os.environ)  # in time if no cuBLAS handle exists yet (__main__ set it)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    # The Mersenne Twister keys (624 words each) go in as tensors: as lists, torch.save pickles
    # 1,250 ints one by one (a persistent_id call each), most of a small checkpoint's save time.
    np_state = np.random.get_state(legacy=False)
    py_version, py_key, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": (py_version, torch.tensor(py_key, dtype=torch.int64), py_gauss),
    }


def _words(key: Any) -> list[int]:
    """An RNG key as ints, from a tensor or (checkpoints before 2026-11-26) a list."""
    return key.tolist() if isinstance(key, torch.Tensor) else list(key)


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(_words(npst["key"]), dtype=np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    py = state["python"]
    random.setstate((py[0], tuple(_words(py[1])), py[2]))

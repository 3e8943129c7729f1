"""`deterministic`: deterministic kernels, cuDNN without benchmarking, a fixed cuBLAS workspace.

torch's switches are process-wide, so each check runs in a process of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys

from pivot_trainer.config import parse_config
from pivot_trainer.process import prepare_determinism

# A Trainer built on CPU from a config with or without the key, then one forward/backward of
# the model, the loss and the validation counts.
BUILD = """
import json, os, sys
import torch
from pivot_trainer.config import parse_config
from pivot_trainer.froc import FrocCounts
from pivot_trainer.metrics import SegCounts
from pivot_trainer.process import StopFlag
from pivot_trainer.runtime import read_env
from pivot_trainer.sink import RecordSink
from pivot_trainer.train import Trainer

cfg = parse_config({"epochs": 1, "image_size": 16, "base_channels": 4,
                    "deterministic": sys.argv[1] == "on"})
rt = read_env({"PIVOT_SESSION_ID": "t-unit", "PIVOT_DEVICE": "cpu"})
trainer = Trainer(cfg, rt, RecordSink(None, rt.session_id), StopFlag(), None, iter(()))
trainer._build()
x = torch.rand(2, 1, 16, 16)
y = (x > 0.8).float()
logits = trainer.net(x)
loss = trainer.loss_fn(logits, y)
loss.backward()
counts, froc = SegCounts(), FrocCounts()
counts.update(logits.detach(), y, float(loss))
froc.update(logits.detach(), y)
print(json.dumps({
    "algorithms": torch.are_deterministic_algorithms_enabled(),
    "cudnn_deterministic": torch.backends.cudnn.deterministic,
    "cudnn_benchmark": torch.backends.cudnn.benchmark,
    "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
}))
"""


def _build(mode: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, mode], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_a_deterministic_config_switches_torch_to_deterministic_kernels() -> None:
    out = _build("on", _env())
    assert out == (
        '{"algorithms": true, "cudnn_deterministic": true, "cudnn_benchmark": false, '
        '"cublas": ":4096:8"}'
    )


def test_without_it_torch_keeps_its_defaults() -> None:
    out = _build("off", _env())
    assert out == (
        '{"algorithms": false, "cudnn_deterministic": false, "cudnn_benchmark": false, '
        '"cublas": null}'
    )


def test_the_key_is_off_by_default_and_a_set_cublas_workspace_wins() -> None:
    assert parse_config({"epochs": 1}).deterministic is False
    assert parse_config({"epochs": 1, "deterministic": True}).deterministic is True
    env = {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}
    prepare_determinism(env)
    assert env == {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}
    empty: dict[str, str] = {}
    prepare_determinism(empty)
    assert empty == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}

"""Checkpoint rules without any store: which one is best, and what a stored file is called."""

from __future__ import annotations

import pytest

from pivot_api.checkpoints.service import Policy, best_of, policy_of
from pivot_api.checkpoints.uploads import sanitise_file_name
from pivot_schema.storage import CheckpointManifest


def manifest(ckpt_id: str, epoch: int, **metrics: float | None) -> CheckpointManifest:
    return CheckpointManifest(
        checkpoint_id=ckpt_id,
        session_id="sess-a",
        epoch=epoch,
        metrics=metrics,
        size_bytes=1,
        sha256="0" * 64,
        object_key=f"checkpoints/sess-a/{ckpt_id}/model.pth",
        created_at=f"2026-01-01T00:00:{epoch:02d}Z",
    )


def test_lowest_loss_is_best_and_a_tie_keeps_the_earlier() -> None:
    ms = [
        manifest("ckpt_sess-a_e00001", 1, val_loss=0.5),
        manifest("ckpt_sess-a_e00002", 2, val_loss=0.3),
        manifest("ckpt_sess-a_e00003", 3, val_loss=0.3),
        manifest("ckpt_sess-a_e00003s000010", 3),
    ]
    assert best_of(ms, Policy("val_loss", "min")) == "ckpt_sess-a_e00002"


def test_highest_wins_in_max_mode_and_nulls_never_win() -> None:
    ms = [
        manifest("ckpt_sess-a_e00001", 1, val_accuracy=0.7),
        manifest("ckpt_sess-a_e00002", 2, val_accuracy=None),
        manifest("ckpt_sess-a_e00003", 3, val_accuracy=0.9),
    ]
    assert best_of(ms, Policy("val_accuracy", "max")) == "ckpt_sess-a_e00003"


def test_without_any_metric_value_the_newest_is_best() -> None:
    ms = [manifest("ckpt_sess-a_e00001", 1), manifest("ckpt_sess-a_e00002", 2)]
    assert best_of(ms, Policy()) == "ckpt_sess-a_e00002"
    assert best_of([], Policy()) is None


@pytest.mark.parametrize(
    ("spec", "policy"),
    [
        ({}, Policy("val_loss", "min")),
        ({"config": {"checkpoint": {"metric": "val_accuracy"}}}, Policy("val_accuracy", "max")),
        ({"checkpoint": {"metric": "dice", "mode": "min"}}, Policy("dice", "min")),
        (
            {
                "checkpoint": {"metric": "a"},
                "config": {"checkpoint": {"metric": "b", "mode": "min"}},
            },
            Policy("a", "min"),
        ),
    ],
)
def test_the_policy_comes_from_the_spec_then_the_config(spec: dict, policy: Policy) -> None:
    assert policy_of({"spec": spec}) == policy


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("model.pth", "model.pth"),
        ("../../etc/passwd", "passwd.pth"),
        ("C:\\Users\\me\\best model (1).pt", "best_model_1_.pt"),
        ("..", "checkpoint.pth"),
        ("", "checkpoint.pth"),
        ("ünïcode.pth", "_n_code.pth"),
        ("x" * 300 + ".pth", "x" * 124 + ".pth"),
    ],
)
def test_file_names_are_sanitised(raw: str, clean: str) -> None:
    assert sanitise_file_name(raw) == clean

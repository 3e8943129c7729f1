from __future__ import annotations

import math

import pytest

from pivot_schema import keys, storage
from pivot_schema.crd import Phase, SessionStatus, api_status


@pytest.mark.parametrize(
    ("phase", "suspend", "expected"),
    [
        (None, True, SessionStatus.CREATED),
        (None, False, SessionStatus.PENDING),
        (None, None, SessionStatus.PENDING),
        ("Created", True, SessionStatus.CREATED),
        ("Pending", False, SessionStatus.PENDING),
        ("Running", False, SessionStatus.RUNNING),
        ("Stopped", True, SessionStatus.STOPPED),
        ("Completed", False, SessionStatus.COMPLETED),
        ("Failed", False, SessionStatus.FAILED),
        ("Bogus", True, SessionStatus.CREATED),
        # Started, operator not caught up yet: the desired state shows.
        ("Created", False, SessionStatus.PENDING),
        ("Stopped", False, SessionStatus.PENDING),
        # Stopped, pod still terminating.
        ("Running", True, SessionStatus.STOPPED),
        ("Pending", True, SessionStatus.STOPPED),
        # Finished is final whatever suspend says.
        ("Completed", True, SessionStatus.COMPLETED),
        ("Failed", True, SessionStatus.FAILED),
    ],
)
def test_api_status_is_derived_from_phase_and_suspend(
    phase: str | None, suspend: bool | None, expected: SessionStatus
) -> None:
    assert api_status(phase, suspend=suspend) is expected


def test_every_phase_has_a_status_word() -> None:
    running = {Phase.PENDING, Phase.RUNNING, Phase.COMPLETED, Phase.FAILED}
    for phase in Phase:
        suspend = phase not in running
        assert api_status(phase.value, suspend=suspend).value == phase.value.lower()


def test_record_roundtrip_drops_non_finite_values() -> None:
    record = keys.epoch_record(3, {"train_loss": 0.5, "val_loss": math.nan}, "2026-01-01T00:00:00Z")
    fields = keys.encode_record(record)
    decoded = keys.decode_record({k.encode(): v.encode() for k, v in fields.items()})
    assert decoded == {
        "epoch": 3,
        "timestamp": "2026-01-01T00:00:00Z",
        "train_loss": 0.5,
        "val_loss": None,
    }


def test_keys_share_one_hash_slot_per_session() -> None:
    assert all("{sess-abc}" in k for k in keys.session_keys("sess-abc"))


def test_checkpoint_ids_carry_their_session() -> None:
    ckpt = storage.checkpoint_id("sess-ab12", 7)
    assert ckpt == "ckpt_sess-ab12_e00007"
    assert storage.parse_checkpoint_id(ckpt) == "sess-ab12"
    assert storage.parse_checkpoint_id("ckpt_../etc") is None
    assert storage.model_key("sess-ab12", ckpt).startswith(storage.session_prefix("sess-ab12"))

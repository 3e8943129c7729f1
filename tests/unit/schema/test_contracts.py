from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pivot_schema import keys, storage
from pivot_schema.crd import Phase, SessionStatus, api_status, session_status


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


def test_a_session_stopped_before_the_operator_saw_it_run_reads_stopped() -> None:
    # The start and the stop both reached the CR before any reconcile (phase still Created):
    # the stop answered `stopped`, and every read says so, not `created`.
    body = {
        "metadata": {"annotations": {"pivot.dev/started-at": "2026-01-01T00:00:00Z"}},
        "spec": {"suspend": True},
        "status": {"phase": "Created"},
    }
    assert session_status(body) is SessionStatus.STOPPED
    assert session_status({**body, "metadata": {}}) is SessionStatus.CREATED
    ran = {"spec": {"suspend": True}, "status": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert session_status(ran) is SessionStatus.STOPPED


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


def _as_read(fields: dict[str, str | bytes]) -> dict[bytes, bytes]:
    """Stream fields as redis-py returns them."""
    return {k.encode(): v.encode() if isinstance(v, str) else v for k, v in fields.items()}


def test_step_column_entries_read_back_as_the_schemas_records() -> None:
    t0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
    rows = [
        (1, 1, 1, 0.6931471824645996, t0 + 7),
        (1, 2, 2, math.inf, t0 + 1_000_000),
        (2, 1, 3, math.nan, t0 + 2_000_000),
        (2, 2, 4, -1e-300, t0 + 3_999_999),
    ]
    fields = _as_read(keys.encode_step_columns(list(zip(*rows, strict=True))))
    head = json.loads(fields[keys.DATA_FIELD.encode()])
    # An appender ranks the entry from its head alone.
    assert head["n"] == 4
    assert head["first"] == {"epoch": 1, "step": 1} and head["last"] == {"epoch": 2, "step": 2}
    assert len(fields[keys.COLUMNS_FIELD.encode()]) == 8 * 4 * len(keys.STEP_COLUMNS)
    records = keys.decode_records(fields)
    assert [r.keys() for r in records] == [keys.step_record(1, 1, 1, 0.5).keys()] * 4
    assert [r["train_loss"] for r in records] == [0.6931471824645996, None, None, -1e-300]
    assert [(r["epoch"], r["step"], r["global_step"]) for r in records] == [r[:3] for r in rows]
    assert [r["timestamp"] for r in records] == [
        "2026-01-01T00:00:00.000007Z",
        "2026-01-01T00:00:01.000000Z",
        "2026-01-01T00:00:02.000000Z",
        "2026-01-01T00:00:03.999999Z",
    ]
    columns = keys.decode_step_columns(fields)
    assert columns is not None and list(columns) == [name for name, _ in keys.STEP_COLUMNS]
    assert list(columns["time_us"]) == [r[4] for r in rows]
    assert math.isnan(columns["train_loss"][1])  # inf is read back as null, as NaN is


def test_json_entries_are_not_column_entries() -> None:
    one = _as_read(keys.encode_record(keys.step_record(1, 2, 2, 0.5, "2026-01-01T00:00:00Z")))
    assert keys.decode_step_columns(one) is None
    assert keys.decode_records(one)[0]["step"] == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: {**f, b"columns": f[b"columns"][:-1]},  # truncated
        lambda f: {**f, b"data": b"{not json"},
        lambda f: {**f, b"data": b'{"n":1,"columns":["epoch"],"dtypes":["<u2"]}'},
        lambda f: {**f, b"data": b"[1,2]"},
        lambda f: {b"columns": f[b"columns"]},  # no head
    ],
)
def test_a_malformed_column_entry_is_a_value_error(damage: Any) -> None:
    fields = damage(_as_read(keys.encode_step_columns([[1], [1], [1], [0.5], [0]])))
    with pytest.raises(ValueError):
        keys.decode_records(fields)


def test_keys_share_one_hash_slot_per_session() -> None:
    assert all("{sess-abc}" in k for k in keys.session_keys("sess-abc"))


def test_the_finalizer_deletes_the_series_rollups_and_their_lock() -> None:
    owned = keys.session_keys("sess-abc")
    assert keys.series_rollups("sess-abc") in owned
    assert keys.series_rollups_lock("sess-abc") in owned


def test_checkpoint_ids_carry_their_session() -> None:
    ckpt = storage.checkpoint_id("sess-ab12", 7)
    assert ckpt == "ckpt_sess-ab12_e00007"
    assert storage.parse_checkpoint_id(ckpt) == "sess-ab12"
    assert storage.parse_checkpoint_id("ckpt_../etc") is None
    assert storage.model_key("sess-ab12", ckpt).startswith(storage.session_prefix("sess-ab12"))

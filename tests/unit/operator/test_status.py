from __future__ import annotations

from typing import Any

from pivot_operator.status import PodView, derive_status, status_diff, telemetry_fields

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"
SPEC = {"config": {"epochs": 4}}


def pod(phase: str, *, terminating: bool = False, exit_code: int | None = None) -> PodView:
    return PodView(name="s-trainer", phase=phase, terminating=terminating, exit_code=exit_code)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_suspended_and_never_started_is_created() -> None:
    out = derive_status({**SPEC, "suspend": True}, {}, None, None, NOW)
    assert out["phase"] == "Created"
    assert out["totalEpochs"] == 4
    assert conditions(out)["Suspended"] == "True"


def test_lifecycle_pending_running_completed() -> None:
    out = derive_status(SPEC, {}, None, None, NOW)
    assert out["phase"] == "Pending"
    running = derive_status(SPEC, out, pod("Running"), None, NOW)
    assert running["phase"] == "Running"
    assert running["startedAt"] == NOW
    assert conditions(running)["Running"] == "True"
    latest = {"epoch": 4, "timestamp": NOW, "train_loss": 0.1, "val_loss": 0.2}
    done = derive_status(SPEC, {**out, **running}, pod("Succeeded"), latest, LATER)
    assert done["phase"] == "Completed"
    assert done["currentEpoch"] == 4
    assert done["progress"] == 1.0
    assert done["completedAt"] == LATER
    assert done["startedAt"] == NOW  # kept from the Running status
    assert done["latestMetrics"] == {"train_loss": 0.1, "val_loss": 0.2}


def test_terminal_phases_never_change() -> None:
    assert derive_status(SPEC, {"phase": "Completed"}, pod("Running"), None, NOW) == {}
    assert derive_status({**SPEC, "suspend": True}, {"phase": "Failed"}, None, None, NOW) == {}


def test_stop_after_start_is_stopped_and_keeps_stopped_at() -> None:
    running = {"phase": "Running", "startedAt": NOW}
    stopped = derive_status(
        {**SPEC, "suspend": True}, running, pod("Running", terminating=True), None, NOW
    )
    assert stopped["phase"] == "Stopped"
    assert stopped["stoppedAt"] == NOW
    again = derive_status({**SPEC, "suspend": True}, {**running, **stopped}, None, None, LATER)
    assert again["stoppedAt"] == NOW


def test_failed_pod_reports_exit_code() -> None:
    out = derive_status(SPEC, {"phase": "Running"}, pod("Failed", exit_code=3), None, NOW)
    assert out["phase"] == "Failed"
    assert "exit code 3" in out["message"]
    assert conditions(out)["Failed"] == "True"


def test_terminating_pod_of_a_running_session_reads_as_pending() -> None:
    out = derive_status(SPEC, {"phase": "Running"}, pod("Running", terminating=True), None, NOW)
    assert out["phase"] == "Pending"


def test_condition_transition_time_is_kept_while_status_holds() -> None:
    first = derive_status(SPEC, {}, pod("Running"), None, NOW)
    second = derive_status(SPEC, first, pod("Running"), None, LATER)
    assert first["conditions"] == second["conditions"]
    assert status_diff({**first}, second) == {}


def test_telemetry_fields() -> None:
    latest = {"epoch": 1, "timestamp": NOW, "train_loss": 0.5, "flag": True, "note": "x"}
    assert telemetry_fields(latest, 4) == {
        "currentEpoch": 1,
        "latestMetrics": {"train_loss": 0.5},
        "progress": 0.25,
    }


def test_pod_view_reads_the_terminated_state() -> None:
    view = PodView.from_pod(
        {
            "metadata": {"name": "p", "deletionTimestamp": NOW},
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                ],
            },
        }
    )
    assert view == PodView("p", "Failed", True, 137, "OOMKilled", None)

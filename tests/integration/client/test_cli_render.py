"""How `pivot` renders: a redrawn bar and colour on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

import pytest

from pivot_client.cli import Printer, Progress, UsageError, body_from_document


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = {"epoch": 1, "timestamp": "t", "train_loss": 0.5, "val_loss": 0.25}


def test_watch_on_a_terminal_redraws_one_line_in_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    view = Progress(Printer("table", out), total=4)
    view.update(RECORD)
    view.update({**RECORD, "epoch": 2})
    view.finish("completed", None, {"val_loss": 0.2})
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 2 and "epoch 2/4 [" + "#" * 15 in text
    assert "\x1b[32mcompleted\x1b[0m" in text
    assert "val_loss=0.25" in text


def test_no_colour_when_asked_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    Progress(Printer("table", out), total=1).finish("failed", "OOMKilled", {})
    assert out.getvalue() == "failed: OOMKilled\n"


def test_watch_in_a_pipe_prints_a_line_per_epoch() -> None:
    out = io.StringIO()
    view = Progress(Printer("table", out), total=2)
    view.update(RECORD)
    assert out.getvalue().startswith("epoch 1/2 [###############---------------] ETA ")
    assert out.getvalue().endswith("\n") and "\r" not in out.getvalue()


def test_manifest_becomes_a_create_body_that_starts() -> None:
    doc = {
        "kind": "TrainingSession",
        "metadata": {"name": "exp"},
        "spec": {"config": {"epochs": 1}, "tags": ["a"]},
    }
    assert body_from_document(doc) == (
        {"config": {"epochs": 1}, "session_name": "exp", "tags": ["a"]},
        True,
    )
    suspended = {**doc, "spec": {**doc["spec"], "suspend": True}}
    assert body_from_document(suspended)[1] is False
    with pytest.raises(UsageError):
        body_from_document({"config": {}, "replicas": 2})

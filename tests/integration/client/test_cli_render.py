"""How `pivot` renders: a redrawn bar and colour on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

import pytest

from pivot_client.cli import Printer, Progress, UsageError, body_from_document, escape


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
        body_from_document({"config": {}, "image": "mine:latest"})
    # Placement travels, camelCase to snake_case.
    placed = {
        **doc,
        "spec": {
            **doc["spec"],
            "resources": {"gpu": 1},
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}],
            "replicas": 2,
        },
    }
    assert body_from_document(placed)[0] == {
        "config": {"epochs": 1},
        "session_name": "exp",
        "tags": ["a"],
        "resources": {"gpu": 1},
        "node_selector": {"pool": "gpu"},
        "tolerations": [{"key": "k", "operator": "Exists", "toleration_seconds": 5}],
        "replicas": 2,
    }
    with pytest.raises(UsageError, match="affinity"):
        body_from_document({**doc, "spec": {**doc["spec"], "affinity": {}}})


def test_escape_makes_control_and_bidi_characters_visible() -> None:
    assert escape("plain name é 漢字") == "plain name é 漢字"
    assert escape("\x00\x07\n\t\r\x1b\x7f\x9b") == "\\x00\\a\\n\\t\\r\\x1b\\x7f\\x9b"
    assert escape("a\u202eb\u200bc\u2028d") == "a\\u202eb\\u200bc\\u2028d"
    assert escape("back\\slash") == "back\\\\slash"  # an escape cannot be forged


def test_a_session_shown_as_key_value_lines_is_escaped() -> None:
    out = io.StringIO()
    Printer("table", out).emit({"session_name": "x\n\x1b[2Jy", "tags": ["a\nb"]})
    assert out.getvalue() == 'session_name: x\\n\\x1b[2Jy\ntags: ["a\\nb"]\n'


def test_watch_shows_the_live_loss_once() -> None:
    out = io.StringIO()
    Progress(Printer("table", out), total=2).update({**RECORD, "loss": 0.25})
    assert "val_loss=0.25" in out.getvalue() and " loss=" not in out.getvalue()

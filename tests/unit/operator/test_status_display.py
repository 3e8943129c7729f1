"""What `kubectl get ts` shows: the Val-Loss column reads a rounded string the operator
writes, since kubectl prints a number column's float with every digit."""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from pivot_operator.status import status_diff
from pivot_operator.telemetry import telemetry_fields

ROOT = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((ROOT / "crds" / "trainingsessions.pivot.dev.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]


def test_the_val_loss_column_is_a_rounded_string_in_status() -> None:
    fields = telemetry_fields({"epoch": 3, "val_loss": 0.12345678901234568, "train_loss": 1}, 4)
    assert fields["displayValLoss"] == "0.1235"
    assert fields["latestMetrics"]["val_loss"] == 0.12345678901234568  # the API's stays exact
    assert telemetry_fields({"epoch": 1, "val_loss": 1.5e-7}, 4)["displayValLoss"] == "1.5e-07"
    assert "displayValLoss" not in telemetry_fields({"epoch": 1, "train_loss": 0.5}, 4)
    # Patched only when what it shows changes, like the rest of status.
    same = telemetry_fields({"epoch": 4, "val_loss": 0.12349}, 4)
    assert "displayValLoss" not in status_diff(fields, same)
    lower = telemetry_fields({"epoch": 4, "val_loss": 0.1}, 4)
    assert status_diff(fields, lower)["displayValLoss"] == "0.1"


def test_the_crd_keeps_the_field_and_its_column_reads_it() -> None:
    column = next(c for c in VERSION["additionalPrinterColumns"] if c["name"] == "Val-Loss")
    assert column == {**column, "type": "string", "jsonPath": ".status.displayValLoss"}
    status = VERSION["schema"]["openAPIV3Schema"]["properties"]["status"]
    fields = telemetry_fields({"epoch": 3, "val_loss": 0.25}, 4)
    Draft202012Validator(status).validate(fields)
    assert "displayValLoss" in status["properties"]  # not pruned by a structural schema

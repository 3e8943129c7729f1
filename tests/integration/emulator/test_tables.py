"""Table cells as the API server's printer-column convertor makes them (`kubectl get`)."""

from __future__ import annotations

from typing import Any

import pytest

from pivot_local.kube.tables import go_value_text, typed_cell


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.12345678901234568, "0.12345678901234568"),  # Go's shortest form, every digit
        (0.25, "0.25"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (0.0001, "0.0001"),
        (0.00001234, "1.234e-05"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (7, "7"),
        (True, "true"),
    ],
)
def test_scalars_print_as_go_prints_them(value: Any, text: str) -> None:
    assert go_value_text(value) == text


@pytest.mark.parametrize(
    ("kind", "value", "cell"),
    [
        ("string", "0.1235", "0.1235"),
        ("string", 0.5, "0.5"),
        ("string", {"a": 1}, '{"a":1}'),
        ("integer", 3, 3),
        ("integer", 2.9, 2),  # truncated, as int64(f)
        ("integer", "3", None),  # another type: no cell, kubectl shows <none>
        ("integer", True, None),
        ("number", 3, 3),
        ("number", 0.25, 0.25),
        ("number", "0.25", None),
        ("boolean", False, False),
        ("boolean", "true", None),
    ],
)
def test_a_cell_takes_its_columns_type(kind: str, value: Any, cell: Any) -> None:
    assert typed_cell(kind, value) == cell

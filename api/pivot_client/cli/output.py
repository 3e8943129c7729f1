"""Printing what the API answered: JSON or YAML for scripts, tables for people. Strings from
the server are escaped in tables, so that no name can rewrite the terminal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import yaml


class Printer:
    def __init__(self, fmt: str, out: IO[str] = sys.stdout) -> None:
        self.fmt = fmt
        self.out = out
        # Colour only for a terminal that has not asked for none (no-color.org).
        self.colour = out.isatty() and not os.environ.get("NO_COLOR") and fmt == "table"

    def paint(self, text: str, status: str) -> str:
        codes = {"completed": "32", "running": "36", "failed": "31", "stopped": "33"}
        code = codes.get(status)
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def data(self, value: Any) -> None:
        if self.fmt == "json":
            json.dump(value, self.out, indent=2, sort_keys=False)
            self.out.write("\n")
        else:
            yaml.safe_dump(value, self.out, sort_keys=False)

    def emit(
        self,
        value: Any,
        rows: Iterable[Mapping[str, Any]] | None = None,
        columns: Sequence[str] = (),
    ) -> None:
        """`value` as JSON/YAML, or `rows` as a table (key: value lines when no rows)."""
        if self.fmt != "table":
            self.data(value)
        elif rows is not None:
            self.table(list(rows), columns)
        else:
            for key, item in (value or {}).items():
                # JSON text escapes control characters itself (and all of non-ASCII).
                shown = json.dumps(item) if isinstance(item, dict | list) else escape(str(item))
                self.out.write(f"{escape(str(key))}: {shown}\n")

    def table(self, rows: list[Mapping[str, Any]], columns: Sequence[str]) -> None:
        if not columns:
            columns = list(dict.fromkeys(k for row in rows for k in row))
        cells = [[fmt_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        self.out.write(
            "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
        )
        self.out.write("\n")
        for row, raw in zip(cells, rows, strict=True):
            line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            self.out.write(self.paint(line, str(raw.get("status", ""))) + "\n")


def fmt_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return escape(",".join(str(v) for v in value)) or "-"
    return escape(str(value))


# Characters a terminal acts on or that reorder what it shows, as C-style escapes.
_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f"}
_ESCAPES |= {"\r": "\\r", "\\": "\\\\"}


def escape(text: str) -> str:
    """`text` safe to print on a terminal: control characters (C0, DEL, C1), format
    characters (bidi overrides such as U+202E, zero-width ones) and line or paragraph
    separators become escapes (`\\n`, `\\x00`, `\\u202e`); a backslash is doubled so that
    an escape cannot be forged. Text without any of them comes back as it was."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)

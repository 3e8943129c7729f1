"""bench/bench_scaling.py's quick mode runs end to end on real Redis and draws its picture:
the two curves that need no API (ingest through the trainer's sink, Redis memory of the
trainer's stream layout), then a redraw from the numbers it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "bench" / "bench_scaling.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240
    )


def test_quick_run_measures_and_draws(tmp_path: Path) -> None:
    png, numbers = tmp_path / "scaling.png", tmp_path / "scaling.json"
    done = run("--quick", "--only", "ingest,memory", "--png", str(png), "--json", str(numbers))
    assert done.returncode == 0, done.stderr[-3000:]
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    data = json.loads(numbers.read_text())
    assert set(data) >= {"ingest", "memory", "wall_s"}

    # Every trainer count ran; each run stored every point it logged (the script checks the
    # sinks' counts), so the rates are of real appends.
    rows = data["ingest"]["rows"]
    assert [r["trainers"] for r in rows] == [1, 4]
    assert all(r["points_per_s"] > 0 for r in rows)
    assert data["ingest"]["durability"].startswith("appendonly yes, appendfsync everysec")

    # A longer series takes more memory; its rollups are a small part of it once the series
    # spans many blocks.
    for kind in ("steps", "epochs"):
        series = data["memory"][kind]
        sizes = [m["stream_bytes"] for m in series]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), series
        longest = series[-1]
        assert longest["points"] >= 10_000
        assert 0 < longest["rollups_bytes"] < longest["stream_bytes"] / 10

    # The picture can be drawn again from the numbers alone.
    again = tmp_path / "again.png"
    redraw = run("--plot", str(numbers), "--png", str(again))
    assert redraw.returncode == 0, redraw.stderr[-3000:]
    assert again.read_bytes().startswith(PNG_SIGNATURE)

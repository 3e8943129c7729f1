"""The dashboard's own unit tests (vitest: series merging, zoom ranges, formatting, the
sessions list reducer...), run with the suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import UI


def test_the_dashboards_unit_tests_pass(ui_dist: Path) -> None:
    # ui_dist has installed the UI's packages (npm ci) and built it.
    run = subprocess.run(
        ["npm", "test", "--silent"], cwd=UI, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "passed" in run.stdout

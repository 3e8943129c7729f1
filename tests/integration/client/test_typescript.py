"""The TypeScript client: installed with npm ci, built with tsc, checked against the server's
OpenAPI document, tested with node's test runner against the local platform, and the
reference's TypeScript example compiled and run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pivot_local.platform import REPO_ROOT, LocalPlatform

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("node") and shutil.which("npm")), reason="node and npm are not installed"
    ),
]

PACKAGE = REPO_ROOT / "api" / "clients" / "typescript"


def npm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=280,
    )


@pytest.fixture(scope="module")
def built() -> Path:
    lock, installed = PACKAGE / "package-lock.json", PACKAGE / "node_modules/.package-lock.json"
    # npm ci wipes and reinstalls: only when the lock changed since the last install.
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run = npm("ci", "--no-audit", "--no-fund", "--prefer-offline")
        assert run.returncode == 0, run.stdout + run.stderr
    run = npm("run", "build")
    assert run.returncode == 0, run.stdout + run.stderr
    return PACKAGE / "dist"


def test_client_fits_the_servers_openapi_document(built: Path, platform: LocalPlatform) -> None:
    run = npm("run", "check-openapi", env={"PIVOT_URL": platform.api_url})
    assert run.returncode == 0, run.stdout + run.stderr


def test_node_test_suite_against_the_platform(built: Path, platform: LocalPlatform) -> None:
    run = npm("test", env={"PIVOT_URL": platform.api_url})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "# fail 0" in run.stdout, run.stdout[-3000:]


def test_reference_typescript_example_compiles_and_runs(
    built: Path, platform: LocalPlatform
) -> None:
    compiled = built / "examples" / "reference.js"  # tsc compiled it from examples/reference.ts
    runnable = compiled.with_name("reference.run.js")
    runnable.write_text(compiled.read_text().replace("http://localhost:8000", platform.api_url))
    run = subprocess.run(
        ["node", str(runnable)], capture_output=True, text=True, timeout=240, cwd=PACKAGE
    )
    assert run.returncode == 0, run.stderr
    # The example exits once the server closes the stream at the session's end.
    epochs = [line.split(":")[0] for line in run.stdout.splitlines()]
    assert epochs == ["Epoch 1", "Epoch 2", "Epoch 3"], run.stdout
    assert "Loss 0." in run.stdout

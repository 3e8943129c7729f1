"""The dashboard in real headless Chromium (Debian's `chromium`, driven by Playwright) against
the local platform, loading the UI the API serves at /ui/.

The UI is built first when api/pivot_api/ui_dist is missing or older than its sources (npm ci
+ vite build); without node the tests are skipped. Every page fails its test on a browser
console error, and its screenshots go to tests/e2e/ui/artifacts/ (gitignored)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from pivot_local.platform import REPO_ROOT, LocalPlatform
from pivot_local.procs import free_port
from tests.support.platform import logs_of
from tests.support.targets import NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG

UI = REPO_ROOT / "api" / "ui"
CLIENT = REPO_ROOT / "api" / "clients" / "typescript"
DIST = REPO_ROOT / "api" / "pivot_api" / "ui_dist"
ARTIFACTS = Path(os.environ.get("PIVOT_UI_ARTIFACTS", Path(__file__).parent / "artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A key of scope read, next to the platform's admin key.
READ_KEY = "pvt_ui-e2e-read-only-key-0123456789abcdef"


def _newest(paths: list[Path]) -> float:
    newest = 0.0
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def _npm(*args: str) -> None:
    run = subprocess.run(["npm", *args], cwd=UI, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (
        f"npm {' '.join(args)} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    )


@pytest.fixture(scope="session")
def ui_dist() -> Path:
    """The built dashboard, rebuilt when any of its sources (or the client's) is newer."""
    sources = [
        UI / "src",
        UI / "index.html",
        UI / "package.json",
        UI / "package-lock.json",
        UI / "vite.config.ts",
        UI / "tsconfig.json",
        CLIENT / "src",
    ]
    index = DIST / "index.html"
    if index.exists() and index.stat().st_mtime >= _newest(sources):
        return DIST
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are not installed: the dashboard cannot be built")
    lock, installed = UI / "package-lock.json", UI / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund", "--prefer-offline")
    _npm("run", "build")
    assert index.exists(), "vite build wrote no index.html"
    return DIST


@pytest.fixture(scope="module")  # its processes end with the module
def ui_platform(ui_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """The platform with its admin key and a read-only one; rate limits off (the tests and
    the pages poll)."""
    if REAL_KUBECONFIG:
        pytest.skip(NEEDS_PROCESS_KUBELET)
    platform = LocalPlatform(
        data_dir=tmp_path_factory.mktemp("pivot-ui"),
        api_port=free_port(),
        configs_dir=REPO_ROOT / "configs",
        rate_limit=False,
    )
    platform.extra_env["PIVOT_API_KEYS"] = f"local:admin:{platform.api_key},viewer:read:{READ_KEY}"
    with platform:
        yield platform


@pytest.fixture()
def api(ui_platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{ui_platform.api_url}/api/v1", timeout=30, headers=ui_platform.api_headers()
    ) as client:
        yield client


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and the suite's asyncio tests after this module cannot start theirs.
@pytest.fixture(scope="module")
def browser_context() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile,  # a fresh user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()


class ConsoleErrors:
    """Console errors and uncaught exceptions of a page; `allow` names the expected ones
    (e.g. the 401 of a refused key)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture()
def console() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture()
def page(
    browser_context: object,
    console: ConsoleErrors,
    ui_platform: LocalPlatform,
    request: pytest.FixtureRequest,
) -> Iterator[object]:
    """A new tab (so an empty sessionStorage: signed out); fails its test on a console error."""
    tab = browser_context.new_page()  # type: ignore[attr-defined]
    tab.set_default_timeout(30_000)
    tab.on(
        "console",
        lambda m: m.type == "error" and console.errors.append(f"console: {m.text} ({m.location})"),
    )
    tab.on("pageerror", lambda e: console.errors.append(f"pageerror: {e}"))
    yield tab
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        shot(tab, f"FAILED-{request.node.name}")
        print(logs_of(ui_platform)[-6000:])
    tab.close()
    unexpected = console.unexpected()
    assert not unexpected, "browser console errors:\n" + "\n".join(unexpected)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


def shot(tab: object, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
    return path

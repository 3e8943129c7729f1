"""The dashboard in Chromium (issue 18), the API serving it at /ui/, beside MLflow's UI.

Everything runs on loopback, started here: Redis, an S3 endpoint, the Kubernetes API emulator
(a process of its own), the API (uvicorn, 2 workers, serving the built dashboard), headless
Chromium (Debian's, driven by Playwright) and, for the peer row, `mlflow server` (SQLite). No
operator and nothing trains: sessions are TrainingSession CRs posted to the emulator with the
status the operator would write patched in; series are written into Redis in the trainer's
layout (bench_scaling.py's writer: column entries of keys.STEPS_CHUNK points) and rolled up by
the API's own code, as a running platform has them.

1. sessions: the sessions page with N sessions (default 1,000; a mix of statuses, metrics and
   tags), cold: a new browser context (empty cache and storage) loading /ui/. "Ready": the
   table shows its first page (25 rows) and the page says all N sessions arrived (its list
   comes from /sse/sessions). "Interactive": ready plus the answer to a keystroke typed into
   the search box as soon as it is ready (the keydown's time -> the filtered table in a
   frame), so a page that shows rows but is still busy does not read as interactive.
2. session: the page of a session whose run has a step series of P points (default 1,000,000)
   and P/1000 epochs, cold: navigation -> the step chart's first draw with points (and -> the
   first chart of any kind); then zooms, the chart's "Zoom in" button 5 times a cycle (each
   halves the view), then Reset: click -> the new range re-fetched at the chart's width and
   drawn. Beside it, MLflow's run page ("Model metrics" tab, which plots the metric from
   get-history-bulk-interval) for a run holding the same P points, loaded into its SQLite as
   bench_scaling.py does, in the same Chromium, also cold: navigation -> its Plotly line drawn.
   Each side has one untimed load first (servers warm, browser cold).
3. live: D dashboards (default 50, each its own browser context, as 50 viewers) on one running
   session's page, opened in steps (5, 10, 25, then D), each step measured: epoch records are
   XADDed one a second as the trainer writes them (keys.epoch_record / encode_record into
   keys.metrics_stream), and each page stamps when its loss chart drew the new epoch: XADD ->
   drawn, over every page and epoch. The note gives a plain SSE client's latency beside them
   (no browser) and the CPU each part used meanwhile: on one 2-core machine the pages'
   rendering is most of it, work that 50 viewers' own machines would do.

"Drawn" is the first animation frame after uPlot's draw hook ran with those points: the chart
writes data-draws / data-points / data-first-x / data-last-x on its element after each draw
(api/ui/src/components/Chart.tsx), and a script installed before the page's own stamps each
draw (a MutationObserver) and the next requestAnimationFrame. Page times run from the start of
the navigation (performance.now()); the live latency compares the page's wall clock
(performance.timeOrigin + now) with the bench's time.time() just before the XADD, one clock.
Pages run with prefers-reduced-motion (the dashboard then stops its CSS animations): Chromium
composites in software here, and a live page's "following" pulse costs ~0.04 of a core (10 idle
pages: 0.50 cores with it, 0.12 without), most of the 2 cores for 50 pages; `--motion` keeps it.
`--floor` hides everything on the live pages but the loss chart (a stylesheet added to each
page; the page still runs all of its code): what the live rows read when each page draws the
least it can, so how much of a miss the machine would have with any page.

    PIVOT_BENCH_MLFLOW=/path/to/env/bin/mlflow \\
      .venv/bin/python bench/bench_ui.py [--quick] [--skip-mlflow] [--only sessions,session,live]
        [--sessions 1000] [--points 1000000] [--dashboards 50] [--loads 10] [--motion] [--floor]
        [--check] [--json PATH]

`--quick` runs small sizes (a smoke run, about a minute; its rows read n/a against the
targets). The dashboard is built first when api/pivot_api/ui_dist is older than its sources.
Prints a Markdown table, then the verdicts against bench/_targets.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform as py_platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import psutil
import redis
from _mlflow import mlflow_server  # bench/ is the script's directory
from _targets import Results, add_check_args
from bench_api import API, Api
from bench_scaling import keep_rollups, load_mlflow, write_steps
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pivot_local.procs import free_port, wait_until_serving
from pivot_local.services import RedisServer, S3Server
from pivot_schema import keys

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "trainingsessions.pivot.dev.yaml"
UI = REPO / "api" / "ui"
DIST = REPO / "api" / "pivot_api" / "ui_dist"
CR_URL = "/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORKERS = 2  # the API's uvicorn workers, as bench_api.py
PAGE_SIZE = 25  # rows of the sessions table's page (api/ui/src/pages/Sessions.tsx)
STEP_CHART = "train_loss by global step"  # the charts' aria-labels
LOSS_CHART = "train_loss and val_loss by epoch"
SEARCH_KEY = "7"  # the keystroke typed into the sessions page's search box
ZOOMS_PER_CYCLE = 5
LIVE_HISTORY = 20  # epochs the live session has when its pages open
LIVE_INTERVAL_S = 1.0  # between the live epochs
LIVE_STEPS = (5, 10, 25)  # dashboards measured on the way to --dashboards
IDLE_S = 4.0  # the open pages' CPU measured with no epoch arriving
TAGS = ("baseline", "resnet", "unet", "sweep-a", "sweep-b", "lr-high", "lr-low")
# The list's statuses: (phase, of every 20 sessions, epochs done of 20); None: never started.
PHASES: tuple[tuple[str | None, int, int], ...] = (
    ("Completed", 12, 20),
    ("Running", 2, 7),
    ("Failed", 2, 3),
    ("Stopped", 2, 11),
    (None, 2, 0),
)
RESULTS = Results("bench_ui")
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    sessions: int  # in the sessions page's list
    points: int  # of the session page's step series
    loads: int  # timed cold loads of each PIVOT page
    zoom_cycles: int
    dashboards: int  # live pages
    live_epochs: int  # epochs XADDed while they watch
    mlflow_loads: int


FULL = Sizes(
    sessions=1000,
    points=1_000_000,
    loads=10,
    zoom_cycles=4,
    dashboards=50,
    live_epochs=10,
    mlflow_loads=5,
)
QUICK = Sizes(
    sessions=100,
    points=100_000,
    loads=3,
    zoom_cycles=1,
    dashboards=5,
    live_epochs=4,
    mlflow_loads=2,
)


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(measure: str, samples_ms: Sequence[float], note: str = "") -> str:
    return (
        f"| {measure} | {statistics.median(samples_ms):.0f} | {pct(samples_ms, 0.95):.0f} "
        f"| {max(samples_ms):.0f} | {len(samples_ms)} | {note} |"
    )


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code that may be inside Playwright's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def ensure_ui_built() -> None:
    """Build the dashboard when its sources (or the TypeScript client's) are newer than the
    build, as the browser tests do."""
    sources = [UI / "src", UI / "index.html", UI / "package.json", UI / "vite.config.ts"]
    sources.append(REPO / "api" / "clients" / "typescript" / "src")
    newest = max(
        p.stat().st_mtime
        for root in sources
        for p in ([root] if root.is_file() else root.rglob("*"))
        if p.is_file()
    )
    index = DIST / "index.html"
    if index.exists() and index.stat().st_mtime >= newest:
        return
    say("building the dashboard (npm run build) ...")
    if not (UI / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI, check=True)
    build = subprocess.run(["npm", "run", "build"], cwd=UI, capture_output=True, text=True)
    if build.returncode != 0:
        sys.exit(f"npm run build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")


# ---- the platform -----------------------------------------------------------------------------


@dataclass
class Platform:
    api: str  # the API's base URL (the dashboard is at /ui/)
    kube: str  # the Kubernetes API emulator's
    redis_url: str
    r: redis.Redis
    pids: dict[str, int]  # its processes (each with its children), by part


@contextmanager
def platform() -> Iterator[Platform]:
    """Redis, S3, the emulator in its own process and the API serving the dashboard; no
    operator (the bench writes the sessions' status, and nothing may start pods)."""
    tmp = Path(tempfile.mkdtemp(prefix="pivot-bench-ui-"))
    (tmp / "configs").mkdir()
    (tmp / "configs" / "train.yaml").write_text("epochs: 10\n")
    redis_server = RedisServer(data_dir=tmp / "redis").start()
    s3 = S3Server().start()
    kube_port = free_port("127.0.0.1")
    kube = f"http://127.0.0.1:{kube_port}"
    kubeconfig = tmp / "kubeconfig"
    emulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "pivot_local.kube", "--port", str(kube_port)),
            *("--crd", str(CRD), "--kubeconfig", str(kubeconfig), "--history-limit", "20000"),
        ],
        stdout=subprocess.DEVNULL,
    )
    api: Api | None = None
    try:
        wait_until_serving(f"{kube}/version", emulator, timeout=30, what="kube emulator")
        port = free_port("127.0.0.1")
        env = dict(
            os.environ,
            PIVOT_KUBECONFIG=str(kubeconfig),
            PIVOT_CONFIGS_DIR=str(tmp / "configs"),
            PIVOT_REDIS_URL=redis_server.url,
            PIVOT_S3_ENDPOINT=s3.endpoint,
            PIVOT_S3_BUCKET=s3.bucket,
            PIVOT_S3_ACCESS_KEY=s3.access_key,
            PIVOT_S3_SECRET_KEY=s3.secret_key,
            # Its health checks warn of the operator and kubelet this bench does not run.
            PIVOT_LOG_LEVEL="ERROR",
            # 50 dashboards on one IP poll and stream: the rate limiter would answer 429.
            PIVOT_RATE_LIMIT_ENABLED="false",
        )
        cmd = [sys.executable, "-m", "uvicorn", "pivot_api.app:app", "--workers", str(WORKERS)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        cmd += ["--no-access-log", "--backlog", "4096"]
        api = Api(cmd, env, f"http://127.0.0.1:{port}")
        assert redis_server.proc is not None
        pids = {"API": api.proc.pid, "Redis": redis_server.proc.pid, "emulator": emulator.pid}
        r = redis.Redis.from_url(redis_server.url)
        try:
            yield Platform(api.base, kube, redis_server.url, r, pids)
        finally:
            r.close()
    finally:
        if api is not None:
            api.stop()
        emulator.terminate()
        emulator.wait(15)
        redis_server.stop()
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- sessions as the operator leaves them -------------------------------------------------


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def session_cr(name: str, i: int, phase: str | None, *, epochs: int) -> dict[str, Any]:
    """A TrainingSession as the API creates one: suspended unless it runs or has ended (a
    running one with `suspend` would read `stopped`)."""
    return {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": {
            "sessionName": f"experiment_{i:04d}",
            "tags": [TAGS[i % 7], TAGS[(i + 1 + (i // 7) % 6) % 7]],  # two, never the same
            "suspend": phase in (None, "Stopped"),
            "config": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.001 * (1 + i % 5)},
        },
    }


def session_status(i: int, phase: str | None, *, epochs: int, current: int) -> dict[str, Any]:
    """The status the operator writes for a session at `phase`, `current` epochs in."""
    if phase is None:
        return {"phase": "Created", "totalEpochs": epochs, "currentEpoch": 0}
    now = time.time()
    val = 1.0 / (1 + current / 4) + 0.01 * (i % 7)
    status: dict[str, Any] = {
        "phase": phase,
        "totalEpochs": epochs,
        "currentEpoch": current,
        "progress": current / epochs,
        "latestMetrics": {"train_loss": val * 0.9, "val_loss": val, "accuracy": 1 - val / 2},
        "displayValLoss": f"{val:.4g}",
        "startedAt": iso(now - 3600 - 60 * (i % 50)),
    }
    if phase in ("Completed", "Failed", "Stopped"):
        status["finishedAt"] = iso(now - 60 * (i % 50))
    if phase == "Completed":
        status["completedAt"] = status["finishedAt"]
    return status


async def post_session(
    http: httpx.AsyncClient, body: dict[str, Any], status: dict[str, Any]
) -> None:
    """Create the CR, then write its status through the status subresource."""
    (await http.post(CR_URL, json=body)).raise_for_status()
    resp = await http.patch(
        f"{CR_URL}/{body['metadata']['name']}/status",
        json={"status": status},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    resp.raise_for_status()


def phase_of(i: int) -> tuple[str | None, int]:
    """Session i's phase and epochs done, cycling through PHASES' shares."""
    slot = i % sum(share for _, share, _ in PHASES)
    for phase, share, done in PHASES:
        if slot < share:
            return phase, done
        slot -= share
    raise AssertionError(slot)


async def seed_sessions(pf: Platform, n: int) -> list[dict[str, Any]]:
    """n sessions, 16 posted at a time; returns each one's id, name and tags."""
    sem = asyncio.Semaphore(16)
    made: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=pf.kube, timeout=60) as http:

        async def one(i: int) -> None:
            name = f"ui-bench-{i:04d}"
            phase, done = phase_of(i)
            body = session_cr(name, i, phase, epochs=20)
            async with sem:
                await post_session(http, body, session_status(i, phase, epochs=20, current=done))
            spec = body["spec"]
            made.append({"id": name, "name": spec["sessionName"], "tags": spec["tags"]})

        await asyncio.gather(*(one(i) for i in range(n)))
    return made


def wait_for_api(
    pf: Platform, path: str, ok: Callable[[httpx.Response], bool], timeout: float = 60
) -> None:
    """Until every API worker's answer at `path` is `ok` (each worker's watch cache has caught
    up; fresh connections land on either worker)."""
    deadline = time.monotonic() + timeout
    while True:
        answers = []
        for _ in range(2 * WORKERS):
            with httpx.Client(base_url=pf.api, timeout=30) as http:
                answers.append(http.get(f"{API}{path}"))
        if all(ok(a) for a in answers):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"GET {path}: {[a.text[:200] for a in answers]}")
        time.sleep(0.2)


def matching(sessions: Sequence[dict[str, Any]], q: str) -> int:
    """Sessions the page's search keeps for `q` (filterSessions, api/ui/src/lib/sessionList.ts)."""
    q = q.strip().lower()
    return sum(
        1
        for s in sessions
        if q in s["id"].lower() or q in s["name"].lower() or any(q in t.lower() for t in s["tags"])
    )


def epoch_record(epoch: int) -> dict[str, Any]:
    val = 1.0 / (1 + epoch / 10)
    return keys.epoch_record(epoch, {"train_loss": 0.9 * val, "val_loss": val})


def seed_run(pf: Platform, name: str, *, phase: str, epochs: int, total: int, steps: int) -> None:
    """A session `epochs` epochs into a run of `total`: its epoch records and `steps` step
    points (1000 an epoch) in Redis as the trainer writes them, rolled up by the API's code."""
    status = session_status(0, phase, epochs=total, current=epochs)
    status["latestMetrics"] = {k: v for k, v in epoch_record(epochs).items() if "loss" in k}

    async def post() -> None:
        async with httpx.AsyncClient(base_url=pf.kube, timeout=60) as http:
            await post_session(http, session_cr(name, 0, phase, epochs=total), status)

    in_thread(post())
    pipe = pf.r.pipeline(transaction=False)
    for e in range(1, epochs + 1):
        pipe.xadd(keys.metrics_stream(name), keys.encode_record(epoch_record(e)))  # type: ignore[arg-type]
    pipe.execute()
    if steps:
        write_steps(pf.r, name, steps)
    in_thread(keep_rollups(pf.redis_url, name))
    wait_for_api(pf, f"/training/sessions/{name}", lambda resp: resp.status_code == 200)


# ---- the browser ---------------------------------------------------------------------------

# Installed in every page before its own script: stamps each chart draw (the attributes
# Chart.tsx writes) with performance.now() and the next animation frame, keydowns and clicks
# with their event times; on the sessions page it looks at every frame for the table being
# ready, then for the search's answer; on MLflow's, for a drawn Plotly line.
INIT_JS = """
(() => {
  const config = %s;
  const bench = { draws: [], keys: [], clicks: [] };
  window.__pivotBench = bench;
  const num = (v) => (v === undefined || v === "" ? null : Number(v));
  new MutationObserver((records) => {
    const t = performance.now();
    for (const r of records) {
      const el = r.target, d = el.dataset;
      const draw = { t, frame: null, label: el.getAttribute("aria-label"), draws: num(d.draws),
                     points: num(d.points), first: num(d.firstX), last: num(d.lastX) };
      bench.draws.push(draw);
      requestAnimationFrame(() => { draw.frame = performance.now(); });
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-draws"] });
  document.addEventListener("keydown", (e) => bench.keys.push(e.timeStamp), true);
  document.addEventListener("click", (e) => bench.clicks.push(e.timeStamp), true);
  const everyFrame = (done) => {
    const look = () => { if (!done(performance.now())) requestAnimationFrame(look); };
    requestAnimationFrame(look);
  };
  const text = (sel) => (document.querySelector(sel) || {}).textContent || "";
  if (config.sessions) {
    const rows = () => document.querySelectorAll("[data-testid=sessions-table] tbody tr").length;
    everyFrame((t) => {
      if (bench.readyAt === undefined) {
        if (rows() === Math.min(config.pageSize, config.sessions)
            && text(".page-head p.subtle").startsWith(config.sessions + " sessions")) {
          bench.readyAt = t;
        }
      } else if (bench.keys.length) {
        const want = config.matching;
        if (rows() === Math.min(config.pageSize, want)
            && (want <= config.pageSize || text("nav.pager").includes("of " + want))) {
          bench.answeredAt = t;
          return true;
        }
      }
      return false;
    });
  }
  if (config.plotly) {
    everyFrame((t) => {
      const paths = [...document.querySelectorAll(".js-plotly-plot path.js-line")];
      if (!paths.some((p) => (p.getAttribute("d") || "").length > 100)) return false;
      bench.plotlyAt = t;
      return true;
    });
  }
})();
"""

# A draw of chart `label` with points, stamped by its frame, after `after`, whose first x is
# beyond `minFirst` (null: any).
WAIT_DRAWN = """([label, after, minFirst]) => window.__pivotBench.draws.some(
  (d) => d.label === label && d.points > 0 && d.t >= after && d.frame !== null
    && (minFirst === null || d.first > minFirst))"""
WAIT_EPOCH = """([label, epoch]) => window.__pivotBench.draws.some(
  (d) => d.label === label && d.last >= epoch && d.frame !== null)"""


# --floor: a stylesheet that leaves the page the loss chart's card alone.
FLOOR_JS = """
document.addEventListener("DOMContentLoaded", () => {
  const style = document.createElement("style");
  style.textContent = ".card:not(:has([data-testid=chart-loss])), .stats, .page-head, header, nav"
    + " { display: none !important; }";
  document.head.appendChild(style);
});
"""


@dataclass
class Pages:
    browser: Browser
    motion: Literal["reduce", "no-preference"]
    floor: bool = False  # show only the loss chart (the live part's floor)

    def new(self, config: dict[str, Any] | None = None) -> tuple[BrowserContext, Page]:
        """A cold page: a context of its own (empty cache, cookies and storage)."""
        context = self.browser.new_context(
            viewport={"width": 1280, "height": 800}, reduced_motion=self.motion
        )
        context.add_init_script(INIT_JS % json.dumps(config or {}))
        if self.floor:
            context.add_init_script(FLOOR_JS)
        page = context.new_page()
        page.set_default_timeout(60_000)
        return context, page


def state(page: Page) -> dict[str, Any]:
    return page.evaluate("() => window.__pivotBench")  # type: ignore[no-any-return]


def first_frame(draws: list[dict[str, Any]], label: str | None) -> float:
    """The frame of the first draw with points (of chart `label`, or of any)."""
    return float(
        next(
            d["frame"]
            for d in draws
            if (label is None or d["label"] == label) and d["points"] and d["frame"] is not None
        )
    )


# ---- 1. the sessions page ---------------------------------------------------------------------


def bench_sessions(
    pages: Pages, pf: Platform, sessions: Sequence[dict[str, Any]], loads: int
) -> list[str]:
    n = len(sessions)
    want = matching(sessions, SEARCH_KEY)
    config = {"sessions": n, "pageSize": PAGE_SIZE, "matching": want}
    ready: list[float] = []
    answer: list[float] = []
    interactive: list[float] = []
    for i in range(loads + 1):  # the first untimed
        context, page = pages.new(config)
        try:
            page.goto(f"{pf.api}/ui/", wait_until="commit")
            page.wait_for_function("() => window.__pivotBench.readyAt !== undefined")
            page.focus("input[type=search]")
            page.keyboard.press(SEARCH_KEY)
            page.wait_for_function("() => window.__pivotBench.answeredAt !== undefined")
            got = state(page)
        finally:
            context.close()
        if i:
            # From the keystroke's own time (the browser's, on receiving it) to its answer.
            took = got["answeredAt"] - got["keys"][0]
            ready.append(got["readyAt"])
            answer.append(took)
            interactive.append(got["readyAt"] + took)
    for stat, value in (
        ("median", statistics.median(interactive)),
        ("p95", pct(interactive, 0.95)),
    ):
        RESULTS.record("sessions page, cold load -> interactive", stat, value, size=n)
    RESULTS.record("sessions page, cold load -> ready", "median", statistics.median(ready), size=n)
    RESULTS.record("sessions page, keystroke -> answer", "p95", pct(answer, 0.95), size=n)
    what = f"sessions page, {n:,} sessions"
    return [
        row(f"{what}: cold load -> ready", ready, f"first {PAGE_SIZE} rows, all {n} listed"),
        row(
            f"{what}: keystroke in search -> filtered table",
            answer,
            f"'{SEARCH_KEY}': {want} match",
        ),
        row(f"{what}: cold load -> interactive", interactive, "ready + keystroke answered"),
    ]


# ---- 2. the session page and its step chart ------------------------------------------------


def open_session(pages: Pages, url: str) -> tuple[BrowserContext, Page]:
    """A cold load of a session page, until its step chart has drawn points."""
    context, page = pages.new()
    page.goto(url, wait_until="commit")
    page.wait_for_function(WAIT_DRAWN, arg=[STEP_CHART, 0, None])
    return context, page


def click(page: Page, selector: str) -> float:
    """Click; the click event's time in the page."""
    before = len(state(page)["clicks"])
    page.click(selector)
    return float(state(page)["clicks"][before])


def bench_session(
    pages: Pages, pf: Platform, sid: str, sizes: Sizes
) -> tuple[list[str], list[float]]:
    url = f"{pf.api}/ui/sessions/{sid}"
    step: list[float] = []
    first: list[float] = []
    for i in range(sizes.loads + 1):  # the first untimed
        context, page = open_session(pages, url)
        draws = state(page)["draws"]
        context.close()
        if i:
            step.append(first_frame(draws, STEP_CHART))
            first.append(first_frame(draws, None))
    # Zoom in ZOOMS_PER_CYCLE times (each halves the view around its middle), then Reset,
    # per cycle: each click -> the first draw of the new range's points (the chart redraws
    # the old points on the new scale at once; those start where the previous range did).
    zooms: list[float] = []
    shown: list[int] = []
    context, page = open_session(pages, url)
    try:
        whole = [d for d in state(page)["draws"] if d["label"] == STEP_CHART][-1]
        for _ in range(sizes.zoom_cycles):
            lo = whole["first"]
            for _ in range(ZOOMS_PER_CYCLE):
                clicked = click(page, "button[aria-label='Zoom in']")
                page.wait_for_function(WAIT_DRAWN, arg=[STEP_CHART, clicked, lo])
                drawn = next(
                    d
                    for d in state(page)["draws"]
                    if d["label"] == STEP_CHART and d["t"] >= clicked and d["first"] > lo
                )
                zooms.append(drawn["frame"] - clicked)
                shown.append(drawn["points"])
                lo = drawn["first"]
            clicked = click(page, "[data-testid=step-reset]")
            page.wait_for_function(
                """([label, after, first, last]) => window.__pivotBench.draws.some((d) =>
                     d.label === label && d.t >= after && d.first === first && d.last === last)""",
                arg=[STEP_CHART, clicked, whole["first"], whole["last"]],
            )
    finally:
        context.close()
    n = sizes.points
    for label, samples in (
        ("session page, cold load -> step chart drawn", step),
        ("step chart zoom -> re-fetched and drawn", zooms),
    ):
        RESULTS.record(label, "median", statistics.median(samples), size=n)
        RESULTS.record(label, "p95", pct(samples, 0.95), size=n)
    what = f"session page, {n:,}-point step series"
    rows = [
        row(f"{what}: cold load -> first chart drawn", first, "any chart"),
        row(f"{what}: cold load -> step chart drawn", step, f"{whole['points']} points drawn"),
        row(
            f"{what}: zoom click -> range re-fetched and drawn",
            zooms,
            f"{sizes.zoom_cycles} x {ZOOMS_PER_CYCLE} halvings; {min(shown)}-{max(shown)} points",
        ),
    ]
    return rows, step


def bench_mlflow(pages: Pages, points: int, loads: int) -> tuple[list[str], list[float]]:
    """MLflow's run page, Model metrics tab, for a run holding the same step series."""
    with mlflow_server() as server, server.client() as http:
        t0 = time.perf_counter()
        run = load_mlflow(server, http, points)
        say(f"mlflow: {points:,} points loaded in {time.perf_counter() - t0:.0f} s")
        info = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run}).json()["run"]["info"]
        url = f"{server.base_url}/#/experiments/{info['experiment_id']}/runs/{run}/model-metrics"
        drawn: list[float] = []
        for i in range(loads + 1):  # the first untimed
            context, page = pages.new({"plotly": True})
            try:
                page.goto(url, wait_until="commit")
                page.wait_for_function(
                    "() => window.__pivotBench.plotlyAt !== undefined", timeout=180_000
                )
                got = state(page)
            finally:
                context.close()
            if i:
                drawn.append(got["plotlyAt"])
    RESULTS.record(
        "MLflow run page, cold load -> chart drawn", "median", statistics.median(drawn), size=points
    )
    what = f"MLflow run page, {points:,}-point metric: cold load -> chart drawn"
    return [row(what, drawn, "Model metrics tab: get-history-bulk-interval, Plotly")], drawn


# ---- 3. live: XADD -> drawn on 50 dashboards ------------------------------------------------


class SseWatch(threading.Thread):
    """A plain SSE client of the session beside the pages: when each new epoch's record reached
    its socket, the latency without a page's work (on one machine it still waits for the CPU
    the pages take)."""

    def __init__(self, url: str, after: int) -> None:
        super().__init__(daemon=True)
        self.url, self.after = url, after
        self.arrived: dict[int, float] = {}
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=None) as http, http.stream("GET", self.url) as resp:
            self.connected.set()
            kind = ""
            for line in resp.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "metrics":
                    epoch = int(json.loads(line[5:])["epoch"])
                    if epoch > self.after:
                        self.arrived.setdefault(epoch, time.time())
                if self.stop.is_set():
                    return


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time (user + system) of these processes and all their children."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    total += t.user + t.system
    return total


def live_window(
    opened: Sequence[Page], pf: Platform, sid: str, first: int, epochs: int
) -> tuple[list[float], dict[int, float], int]:
    """XADD `epochs` epochs from `first` on, LIVE_INTERVAL_S apart; each page's XADD -> drawn
    latencies (ms), the XADD times by epoch, and how many (page, epoch) were never drawn."""
    sent: dict[int, float] = {}
    for epoch in range(first, first + epochs):
        fields = keys.encode_record(epoch_record(epoch))
        sent[epoch] = time.time()
        pf.r.xadd(keys.metrics_stream(sid), fields)  # type: ignore[arg-type]
        time.sleep(max(0.0, sent[epoch] + LIVE_INTERVAL_S - time.time()))
    deadline = time.monotonic() + 15
    for page in opened:
        with contextlib.suppress(PlaywrightTimeout):  # counted below as never drawn
            page.wait_for_function(
                WAIT_EPOCH,
                arg=[LOSS_CHART, max(sent)],
                timeout=max(1000, (deadline - time.monotonic()) * 1000),
            )
    drawn: list[float] = []
    missed = 0
    for page in opened:
        got = page.evaluate(
            "() => ({origin: performance.timeOrigin, draws: window.__pivotBench.draws})"
        )
        for epoch, at in sent.items():
            frames = [
                x["frame"]
                for x in got["draws"]
                if x["label"] == LOSS_CHART and (x["last"] or 0) >= epoch and x["frame"]
            ]
            if frames:
                drawn.append(((got["origin"] + min(frames)) / 1000 - at) * 1000)
            else:
                missed += 1
    return drawn + [float("inf")] * missed, sent, missed


def bench_live(pages: Pages, pf: Platform, sid: str, sizes: Sizes) -> list[str]:
    """The dashboards open in steps (LIVE_STEPS up to --dashboards), each step measured, so
    the rows show how the latency grows with the pages this one machine renders."""
    url = f"{pf.api}/ui/sessions/{sid}"
    steps = sorted({n for n in LIVE_STEPS if n < sizes.dashboards} | {sizes.dashboards})
    contexts: list[BrowserContext] = []
    opened: list[Page] = []
    rows: list[str] = []
    watch = SseWatch(f"{pf.api}{API}/sse/training/{sid}", LIVE_HISTORY)
    # CPU by part: the browser is every child of this process that is not the platform's
    # (Playwright's driver and the Chromium it started).
    parts = {k: [v] for k, v in pf.pids.items()}
    parts["browser"] = [p.pid for p in psutil.Process().children() if p.pid not in pf.pids.values()]
    last = LIVE_HISTORY
    watch.start()
    try:
        watch.connected.wait(30)
        for n in steps:
            t_open = time.perf_counter()
            while len(opened) < n:
                context, page = pages.new()
                contexts.append(context)
                page.goto(url, wait_until="commit")
                opened.append(page)
            for page in opened:  # each has drawn every epoch so far
                page.wait_for_function(WAIT_EPOCH, arg=[LOSS_CHART, last], timeout=180_000)
            open_s = time.perf_counter() - t_open
            time.sleep(2.0)  # the new pages' first requests settle
            # What open pages cost with nothing arriving (clocks, polls), beside the live window's.
            idle0, t_idle = cpu_seconds(parts["browser"]), time.perf_counter()
            time.sleep(IDLE_S)
            idle = (cpu_seconds(parts["browser"]) - idle0) / (time.perf_counter() - t_idle)
            cpu0 = {k: cpu_seconds(v) for k, v in parts.items()}
            wall0 = time.perf_counter()
            drawn, sent, missed = live_window(opened, pf, sid, last + 1, sizes.live_epochs)
            window = time.perf_counter() - wall0
            cores = {k: (cpu_seconds(v) - cpu0[k]) / window for k, v in parts.items()}
            last = max(sent)
            delivered = [
                (watch.arrived[e] - at) * 1000 for e, at in sent.items() if e in watch.arrived
            ]
            # The floor's rows are not the target's measure (a page that shows one chart).
            floor = " (--floor)" if pages.floor else ""
            measure = "live XADD -> point drawn" + (", loss chart alone" if pages.floor else "")
            if n != sizes.dashboards:
                measure += f", {n} dashboards"
            RESULTS.record(measure, "p95", pct(drawn, 0.95), size=n)
            RESULTS.record(measure, "median", statistics.median(drawn), size=n)
            busy = ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(cores.items(), key=lambda kv: -kv[1])
            )
            sse = (
                f"{statistics.median(delivered):.0f} / {pct(delivered, 0.95):.0f} ms"
                if delivered
                else "none"
            )
            rows.append(
                row(
                    f"live{floor}: XADD -> point drawn, {n} dashboards",
                    drawn,
                    f"{sizes.live_epochs} epochs {LIVE_INTERVAL_S:g} s apart, {missed} never "
                    f"drawn; a plain SSE client beside: median / p95 {sse}; CPU cores busy: "
                    f"{busy} (browser idle: {idle:.2f}); opening took {open_s:.0f} s",
                )
            )
    finally:
        watch.stop.set()
        for context in contexts:
            context.close()
    return rows


# ---- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, sizes: Sizes, only: set[str], mlflow: bool) -> list[str]:
    rows: list[str] = []
    with platform() as pf, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pages = Pages(browser, "no-preference" if args.motion else "reduce", floor=args.floor)
        args.chromium = browser.version
        try:
            if "sessions" in only:
                t0 = time.perf_counter()
                sessions = in_thread(seed_sessions(pf, sizes.sessions))
                wait_for_api(
                    pf,
                    "/training/sessions?limit=1",
                    lambda resp: resp.json()["total"] == sizes.sessions,
                )
                say(f"{sizes.sessions} sessions posted in {time.perf_counter() - t0:.1f} s")
                rows += bench_sessions(pages, pf, sessions, sizes.loads)
            if "session" in only:
                t0 = time.perf_counter()
                epochs = max(1, sizes.points // 1000)
                seed_run(pf, "ui-bench-steps", phase="Completed", epochs=epochs, total=epochs,
                         steps=sizes.points)  # fmt: skip
                say(
                    f"{sizes.points:,} steps written, rolled up in {time.perf_counter() - t0:.1f} s"
                )
                session_rows, ours = bench_session(pages, pf, "ui-bench-steps", sizes)
                rows += session_rows
                if mlflow:
                    peer_rows, theirs = bench_mlflow(pages, sizes.points, sizes.mlflow_loads)
                    rows += peer_rows
                    label = "session page vs MLflow run page, cold load -> chart drawn"
                    speedup = statistics.median(theirs) / statistics.median(ours)
                    RESULTS.record(label, "speed-up at the median", speedup, size=sizes.points)
                    rows.append(
                        f"| {label}: speed-up | {speedup:.1f}x | | | {len(ours)} / {len(theirs)} "
                        "| MLflow's median over PIVOT's step chart's |"
                    )
            if "live" in only:
                seed_run(pf, "ui-bench-live", phase="Running", epochs=LIVE_HISTORY, total=1000,
                         steps=LIVE_HISTORY * 1000)  # fmt: skip
                rows += bench_live(pages, pf, "ui-bench-live", sizes)
        finally:
            browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--sessions", type=int, help=f"in the list (default {FULL.sessions})")
    parser.add_argument("--points", type=int, help=f"of the step series (default {FULL.points})")
    parser.add_argument("--dashboards", type=int, help=f"live pages (default {FULL.dashboards})")
    parser.add_argument("--loads", type=int, help=f"timed cold loads a page (default {FULL.loads})")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--motion", action="store_true", help="pages without reduced motion")
    parser.add_argument(
        "--floor", action="store_true", help="live pages show the loss chart alone (a floor)"
    )
    parser.add_argument(
        "--only", default="sessions,session,live", help="comma-separated: sessions,session,live"
    )
    add_check_args(parser)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    for name in ("sessions", "points", "dashboards", "loads"):
        if getattr(args, name) is not None:
            sizes = replace(sizes, **{name: getattr(args, name)})
    only = set(args.only.split(","))
    if unknown := only - {"sessions", "session", "live"}:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if not Path(CHROMIUM).exists():
        parser.error(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    mlflow = "session" in only and not args.skip_mlflow
    if mlflow:  # as bench/_mlflow.py finds it: found missing now, not after PIVOT's rows
        mlflow_bin = os.environ.get("PIVOT_BENCH_MLFLOW") or str(
            Path(sys.executable).parent / "mlflow"
        )
        if not Path(mlflow_bin).exists():
            parser.error(f"no mlflow at {mlflow_bin}: set PIVOT_BENCH_MLFLOW or --skip-mlflow")
    ensure_ui_built()
    started = time.perf_counter()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = run(args, sizes, only, mlflow)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {py_platform.machine()}, {os.cpu_count()} cores, "
        f"Chromium {args.chromium} headless ({'motion' if args.motion else 'reduced motion'}), "
        f"uvicorn --workers {WORKERS}, load average before {load_before}, "
        f"{time.perf_counter() - started:.0f} s in all:\n"
    )
    print("| measure | median (ms) | p95 (ms) | max (ms) | n | note |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    RESULTS.finish(args)


if __name__ == "__main__":
    main()

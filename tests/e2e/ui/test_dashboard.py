"""The dashboard as a person uses it, in headless Chromium against the local platform: sign
in, watch sessions live, create and start one from the form, see its charts and log grow,
stop it, download a checkpoint, act on alerts, compare runs, and a read-only key."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from pivot_local.platform import LocalPlatform
from tests.e2e.ui.conftest import READ_KEY, ConsoleErrors, shot
from tests.support.platform import TINY_CONFIG, wait_for_status
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Long enough that the page sees it train (it is stopped from the page well before its end).
# It logs train_loss every 2 steps (4 a epoch here) for the step chart.
LONG_CONFIG: dict[str, Any] = {**TINY_CONFIG, "epochs": 400, "log_every_steps": 2}


def sign_in(
    page: Page, platform: LocalPlatform, key: str | None = None, path: str = "/ui/"
) -> None:
    """The one-click link `pivot up` prints: the key rides in the fragment."""
    page.goto(f"{platform.api_url}{path}#key={key or platform.api_key}")
    expect(page.get_by_test_id("who")).to_be_visible()


def create(api: httpx.Client, config: dict[str, Any], **body: Any) -> str:
    resp = api.post("/training/sessions", json={"config": config, **body})
    resp.raise_for_status()
    return str(resp.json()["session_id"])


def train(api: httpx.Client, platform: LocalPlatform, config: dict[str, Any], **body: Any) -> str:
    session_id = create(api, config, **body)
    api.post(f"/training/sessions/{session_id}/start").raise_for_status()
    wait_for_status(api, platform, session_id, "completed", timeout=180)
    return session_id


def status_on(page: Page) -> str:
    return page.locator(".page-head [data-status]").get_attribute("data-status") or ""


def count(page: Page, test_id: str) -> int:
    loc = page.get_by_test_id(test_id)
    return int(loc.inner_text()) if loc.count() else 0


def confirm(page: Page, label: str) -> None:
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=label, exact=True).click()
    expect(dialog).to_have_count(0)


def test_the_printed_link_signs_in_and_drops_the_key_from_the_address_bar(
    page: Page, ui_platform: LocalPlatform
) -> None:
    sign_in(page, ui_platform)
    expect(page.get_by_test_id("who")).to_contain_text("local")
    expect(page.get_by_test_id("who")).to_contain_text("admin")
    assert "#" not in page.url and ui_platform.api_key not in page.url, page.url
    # The key is kept in the tab: a reload stays signed in.
    page.reload()
    expect(page.get_by_role("heading", name="Training sessions")).to_be_visible()
    expect(page.get_by_test_id("who")).to_contain_text("admin")


def test_the_prompt_refuses_a_wrong_key_and_accepts_the_right_one(
    page: Page, ui_platform: LocalPlatform, console: ConsoleErrors
) -> None:
    page.goto(f"{ui_platform.api_url}/ui/")
    # A first visit asks for a key with no error in the console (whoami answers "no key").
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "signin")
    assert not console.unexpected(), console.errors
    console.allow(r"status of 401")  # the wrong key's answer
    page.get_by_label("API key").fill("pvt_this-is-not-a-key-of-this-platform")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    page.get_by_label("API key").fill(ui_platform.api_key or "")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Training sessions")).to_be_visible()


def test_the_sessions_table_is_live_filtered_and_paged(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client
) -> None:
    sign_in(page, ui_platform)
    tag = f"live-{secrets.token_hex(3)}"
    session_id = create(api, TINY_CONFIG, session_name=f"row {tag}", tags=[tag])
    row = page.locator(f"tr[data-session-id='{session_id}']")
    expect(row).to_be_visible()  # no reload: it came over /sse/sessions
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "created")
    api.post(f"/training/sessions/{session_id}/start").raise_for_status()
    expect(row.locator("[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=180_000
    )
    expect(row).to_contain_text("3/3")
    expect(row).to_contain_text("100%")

    # Filters: text, tag, status; each lands in the URL.
    page.get_by_label("Search sessions").fill(tag)
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_label("Search sessions").fill("")
    page.get_by_label("Filter by tag").select_option(tag)
    expect(page.locator("tbody tr")).to_have_count(1)
    assert f"tag={tag}" in page.url
    page.get_by_label("Filter by status").select_option("running")
    expect(page.get_by_text("No session matches these filters.")).to_be_visible()
    page.get_by_label("Filter by status").select_option("")

    # Paging: 26 sessions of one tag are two pages.
    paged = f"page-{secrets.token_hex(3)}"
    for i in range(26):
        create(api, TINY_CONFIG, session_name=f"{paged}-{i:02d}", tags=[paged])
    page.get_by_label("Filter by tag").select_option(paged)
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text(
        "1\u201325 of 26"
    )  # an en dash
    expect(page.locator("tbody tr")).to_have_count(25)
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text(
        f"{paged}-00"
    )  # newest first: the first made is last
    assert "page=2" in page.url
    page.get_by_label("Filter by tag").select_option("")
    shot(page, "sessions")


def test_create_and_start_from_the_form_then_watch_it_train_and_stop_it(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client
) -> None:
    sign_in(page, ui_platform)
    page.get_by_test_id("new-session").click()
    expect(page.get_by_role("heading", name="New training session")).to_be_visible()
    # From the configs dir's train.yaml, edited in place.
    expect(page.get_by_test_id("config-source")).to_have_value("configs/train.yaml")
    expect(page.get_by_label("Config YAML")).to_have_value(re.compile(r"^epochs: 8$", re.M))
    page.get_by_label("Config YAML").fill(yaml.safe_dump(LONG_CONFIG))
    page.locator("input[name=session_name]").fill("ui-e2e-long")
    page.locator("input[name=tags]").fill("e2e, ui")
    shot(page, "new-session")
    page.get_by_test_id("create").click()
    page.wait_for_url(re.compile(r"/ui/sessions/sess-[a-z0-9]+$"))
    session_id = page.url.rsplit("/", 1)[1]
    body = api.get(f"/training/sessions/{session_id}").json()
    assert body["session_name"] == "ui-e2e-long" and body["tags"] == ["e2e", "ui"]
    assert body["config"]["epochs"] == 400

    # The loss chart gains points while the status reads running (both read from the page).
    first = wait_for(
        lambda: status_on(page) == "running" and count(page, "chart-loss-points"),
        120,
        "the first epoch on the loss chart of a running session",
    )
    wait_for(
        lambda: count(page, "chart-loss-points") > first and status_on(page) == "running",
        120,
        f"the loss chart to grow past {first} epochs while running",
    )
    # The trainer's log, live.
    expect(page.get_by_test_id("log-following")).to_be_visible()
    expect(page.get_by_test_id("log")).to_contain_text("epoch 1/400")
    assert status_on(page) == "running"
    # The step chart refreshes while it can be seen (below the epoch charts here): scroll to it.
    page.get_by_test_id("step-info").scroll_into_view_if_needed()
    wait_for(lambda: count(page, "step-points") > 0, 60, "the step chart's points")
    shot(page, "session-running")

    page.get_by_test_id("stop").click()
    confirm(page, "Stop")
    expect(page.locator(".page-head [data-status]")).to_have_attribute(
        "data-status", "stopped", timeout=120_000
    )
    assert api.get(f"/training/sessions/{session_id}").json()["status"] == "stopped"
    expect(page.get_by_test_id("start")).to_have_text("Resume")
    # What the loss chart holds is what the API stored: no epoch lost or drawn twice (an
    # epoch cut short by the stop may have a train_loss and no val_loss).
    stored: set[int] = set()
    for name in ("train_loss", "val_loss"):
        history = api.get(f"/metrics/{session_id}/history", params={"metric_name": name})
        stored.update(history.json()["epochs"])
    wait_for(
        lambda: count(page, "chart-loss-points") == len(stored),
        30,
        f"{len(stored)} epochs on the chart (it shows {count(page, 'chart-loss-points')})",
    )


def test_start_from_the_page_completes_live_and_a_checkpoint_downloads_intact(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client
) -> None:
    config = {**TINY_CONFIG, "checkpoint": {"metric": "val_dice"}, "log_every_steps": 1}
    session_id = create(api, config, session_name="ui-e2e-tiny")
    sign_in(page, ui_platform, path=f"/ui/sessions/{session_id}")
    expect(page.locator(".page-head [data-status]")).to_have_attribute("data-status", "created")
    page.get_by_test_id("start").click()
    confirm(page, "Start")
    # No reload from here on: the page follows the session's live stream.
    expect(page.locator(".page-head [data-status]")).to_have_attribute(
        "data-status", "completed", timeout=180_000
    )
    expect(page.get_by_test_id("chart-loss-points")).to_have_text("3")
    expect(page.get_by_test_id("epoch")).to_have_text("3")
    expect(page.get_by_test_id("config-yaml")).to_contain_text("metric: val_dice")
    expect(page.get_by_test_id("events-table")).to_contain_text("Completed")
    expect(page.get_by_test_id("conditions-table")).to_contain_text("Succeeded")

    listed = api.get("/checkpoints", params={"session_id": session_id}).json()["checkpoints"]
    rows = page.locator("tr[data-checkpoint-id]")
    expect(rows).to_have_count(len(listed))
    expect(page.get_by_test_id("best-marker")).to_have_count(sum(c["is_best"] for c in listed))
    row = rows.first
    checkpoint_id = row.get_attribute("data-checkpoint-id")
    with page.expect_download() as download:
        row.get_by_role("button", name=re.compile("Download")).click()
    data = open(download.value.path(), "rb").read()  # noqa: SIM115
    api_sha = next(c["sha256"] for c in listed if c["checkpoint_id"] == checkpoint_id)
    assert hashlib.sha256(data).hexdigest() == api_sha
    shot(page, "session")

    # Zoom the step chart: the page asks for the visible steps again, and shows what the API
    # has for them.
    steps = api.get(f"/metrics/{session_id}/steps").json()["steps"]
    wait_for(lambda: count(page, "step-points") == len(steps), 30, f"{len(steps)} step points")
    page.get_by_role("button", name="Zoom in").click()
    info = page.get_by_test_id("step-info")
    expect(info).to_contain_text(re.compile(r"steps \d+\u2013\d+"))
    first, last = map(int, re.findall(r"steps (\d+)\u2013(\d+)", info.inner_text())[0])
    in_view = [s for s in steps if first <= s <= last]
    assert 0 < len(in_view) < len(steps), (first, last, steps)
    wait_for(lambda: count(page, "step-points") == len(in_view), 30, f"{len(in_view)} points")
    page.get_by_test_id("step-reset").click()
    expect(info).to_contain_text("whole run")
    wait_for(lambda: count(page, "step-points") == len(steps), 30, "the whole run again")

    # Delete one, with confirmation.
    last = rows.last
    doomed = last.get_attribute("data-checkpoint-id")
    last.get_by_role("button", name=re.compile("Delete")).click()
    confirm(page, "Delete")
    expect(page.locator(f"tr[data-checkpoint-id='{doomed}']")).to_have_count(0)
    assert api.get(f"/checkpoints/{doomed}/download").status_code == 404


def test_a_rule_made_on_the_page_raises_an_alert_that_is_acknowledged_there(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client
) -> None:
    sign_in(page, ui_platform, path="/ui/alerts")
    name = f"ui_cpu_{secrets.token_hex(3)}"
    form = page.get_by_test_id("rule-form")
    form.locator("input[name=rule-name]").fill(name)
    form.locator("select[name=rule-metric]").select_option("cpu_percent")
    form.locator("select[name=rule-condition]").select_option("greater_than")
    form.locator("input[name=rule-threshold]").fill("-1")  # always true: it fires at once
    form.locator("select[name=rule-severity]").select_option("high")
    form.get_by_role("button", name="Add rule").click()
    rule_row = page.get_by_test_id("rules-table").locator("tr", has_text=name)
    expect(rule_row).to_be_visible()
    rule_id = rule_row.get_attribute("data-rule-id")

    alert_row = page.get_by_test_id("alerts-table").locator(f"tr[data-rule-id='{rule_id}']")
    expect(alert_row).to_be_visible(timeout=60_000)
    expect(alert_row).to_contain_text("high")
    shot(page, "alerts")
    alert_id = alert_row.get_attribute("data-alert-id")
    alert_row.get_by_role("button", name="Acknowledge").click()
    page.locator("dialog[open] textarea").fill("looking at it")
    confirm(page, "Acknowledge")
    expect(page.locator(f"tr[data-alert-id='{alert_id}']")).to_have_count(0)  # left the active tab
    alert = api.get(f"/alerts/{alert_id}").json()
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "local"
    assert alert["notes"] == "looking at it"
    page.get_by_role("tab", name="acknowledged").click()
    expect(page.locator(f"tr[data-alert-id='{alert_id}'] [data-testid=alert-status]")).to_have_text(
        "acknowledged"
    )

    # The bell has the alert's notification; mark it read there.
    page.get_by_test_id("bell").click()
    note = page.locator(f"li.unread[data-rule-id='{rule_id}']").first
    expect(note).to_be_visible(timeout=60_000)
    note_id = note.get_attribute("data-notification-id")
    note.get_by_role("button", name="Mark read").click()
    expect(page.locator(f"li[data-notification-id='{note_id}']")).to_have_class(
        re.compile(r"\bread\b")
    )
    notes = api.get("/notifications").json()["notifications"]
    assert next(n for n in notes if n["id"] == note_id)["read"] is True
    page.keyboard.press("Escape")

    # Disable, then delete the rule.
    rule_row.get_by_label(f"Rule {name} enabled").click()
    wait_for(
        lambda: api.get(f"/alerts/rules/{rule_id}").json()["enabled"] is False,
        30,
        "the rule disabled",
    )
    rule_row.get_by_role("button", name="Delete").click()
    confirm(page, "Delete")
    expect(
        page.get_by_test_id("rules-table").locator(f"tr[data-rule-id='{rule_id}']")
    ).to_have_count(0)
    assert api.get(f"/alerts/rules/{rule_id}").status_code == 404


def test_compare_two_finished_sessions(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client
) -> None:
    tag = f"cmp-{secrets.token_hex(3)}"
    a = train(api, ui_platform, TINY_CONFIG, session_name=f"{tag}-a", tags=[tag])
    b = train(
        api,
        ui_platform,
        {**TINY_CONFIG, "learning_rate": 0.02},
        session_name=f"{tag}-b",
        tags=[tag],
    )
    sign_in(page, ui_platform)
    page.get_by_label("Filter by tag").select_option(tag)
    for sid in (a, b):
        page.locator(f"tr[data-session-id='{sid}'] input[type=checkbox]").check()
    page.get_by_role("link", name="Compare 2").click()
    page.wait_for_url(re.compile(r"/ui/compare\?ids="))
    page.reload()  # the URL alone brings the view back
    table = page.get_by_test_id("compare-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text(f"{tag}-a")
    expect(table).to_contain_text("val_loss")
    diff = page.get_by_test_id("config-diff")
    expect(diff).to_contain_text("learning_rate")
    expect(diff).to_contain_text("0.02")
    expect(diff).not_to_contain_text("batch_size")
    page.get_by_test_id("compare-metric").select_option("val_dice")
    assert "metric=val_dice" in page.url
    expect(page.get_by_test_id("compare-chart").locator(".u-legend")).to_contain_text(f"{tag}-b")
    shot(page, "compare")


def test_a_read_only_key_sees_no_write_buttons(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client
) -> None:
    done = train(api, ui_platform, TINY_CONFIG, session_name="ui-e2e-read-done")
    idle = create(api, TINY_CONFIG, session_name="ui-e2e-read-idle")
    sign_in(page, ui_platform, key=READ_KEY)
    expect(page.get_by_test_id("who")).to_contain_text("viewer")
    expect(page.get_by_test_id("who")).to_contain_text("read")
    expect(page.locator(f"tr[data-session-id='{idle}']")).to_be_visible()
    expect(page.get_by_test_id("new-session")).to_have_count(0)

    page.goto(f"{ui_platform.api_url}/ui/sessions/{idle}")
    expect(page.locator(".page-head [data-status]")).to_have_attribute("data-status", "created")
    expect(page.get_by_test_id("start")).to_have_count(0)

    page.goto(f"{ui_platform.api_url}/ui/sessions/{done}")
    expect(page.locator("tr[data-checkpoint-id]").first).to_be_visible()
    expect(
        page.locator("tr[data-checkpoint-id]").first.get_by_role(
            "button", name=re.compile("Download")
        )
    ).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
    expect(page.get_by_test_id("stop")).to_have_count(0)
    shot(page, "session-read-only")

    page.goto(f"{ui_platform.api_url}/ui/alerts")
    expect(page.get_by_role("heading", level=1, name="Alerts", exact=True)).to_be_visible()
    expect(page.get_by_test_id("rule-form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Acknowledge|Resolve|Delete"))).to_have_count(
        0
    )
    page.goto(f"{ui_platform.api_url}/ui/new")
    expect(page.get_by_text("can read but not create")).to_be_visible()


def test_the_form_shows_the_apis_errors_next_to_the_fields(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client, console: ConsoleErrors
) -> None:
    console.allow(r"status of 422")  # the refused creates
    sign_in(page, ui_platform, path="/ui/new")
    page.get_by_label("Start training right away").uncheck()
    editor = page.get_by_label("Config YAML")
    errors = page.get_by_test_id("config-errors")

    editor.fill("epochs: [1\n")
    page.get_by_test_id("create").click()
    expect(errors).to_contain_text("YAML")

    editor.fill("batch_size: 4\nepochs: many\n")
    page.get_by_test_id("create").click()
    expect(errors).to_contain_text("epochs")
    expect(errors).to_contain_text("(line 2)")
    expect(editor).to_have_attribute("aria-invalid", "true")

    editor.fill(yaml.safe_dump(TINY_CONFIG))
    page.locator("input[name=tags]").fill("ok, " + "x" * 80)
    page.get_by_test_id("create").click()
    tags_error = page.locator("input[name=tags] ~ .field-errors")
    expect(tags_error).to_be_visible()
    expect(errors).to_have_count(1)
    expect(errors).to_be_empty()
    shot(page, "new-session-errors")

    page.locator("input[name=tags]").fill("ok")
    page.get_by_test_id("create").click()
    page.wait_for_url(re.compile(r"/ui/sessions/sess-[a-z0-9]+$"))
    expect(page.locator(".page-head [data-status]")).to_have_attribute("data-status", "created")


def test_every_view_has_a_url_that_reloads(
    page: Page, ui_platform: LocalPlatform, console: ConsoleErrors
) -> None:
    page.goto(f"{ui_platform.api_url}/")
    page.wait_for_url(re.compile(r"/ui/"))
    sign_in(page, ui_platform)
    views = {
        "/ui/": "Training sessions",
        "/ui/alerts": "Alerts",
        "/ui/resources": "Resources",
        "/ui/new": "New training session",
        "/ui/compare": "Compare sessions",
        "/ui/no/such/view": "Not found",
    }
    for path, heading in views.items():
        page.goto(f"{ui_platform.api_url}{path}")
        expect(page.get_by_role("heading", level=1, name=heading, exact=True)).to_be_visible()
        if path == "/ui/resources":
            expect(page.get_by_test_id("resources-chart")).to_be_visible()
        if path == "/ui/":
            expect(page.get_by_test_id("sessions-table")).to_be_visible()
        shot(page, path.strip("/").replace("/", "-") or "ui")
    # Keyboard: the nav is reachable and moves between views without a page load.
    page.goto(f"{ui_platform.api_url}/ui/")
    page.get_by_role("link", name="Alerts").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Alerts", exact=True)).to_be_visible()
    # Phone width, and dark.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{ui_platform.api_url}/ui/")
    expect(page.get_by_test_id("sessions-table")).to_be_visible()
    shot(page, "sessions-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="dark")
    page.goto(f"{ui_platform.api_url}/ui/")
    expect(page.get_by_test_id("sessions-table")).to_be_visible()
    shot(page, "sessions-dark")


def test_zz_a_lost_connection_shows_a_banner_and_the_list_resumes(
    page: Page, ui_platform: LocalPlatform, api: httpx.Client, console: ConsoleErrors
) -> None:
    console.allow(
        r"ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET|Failed to load resource"
    )
    sign_in(page, ui_platform)
    expect(page.get_by_test_id("sessions-table")).to_be_visible()
    ui_platform.stop_api()
    try:
        expect(page.get_by_test_id("connection-banner")).to_be_visible(timeout=60_000)
        shot(page, "connection-lost", full_page=False)
    finally:
        ui_platform.start_api()
    expect(page.get_by_test_id("connection-banner")).to_have_count(0, timeout=60_000)
    # The stream resumed: a session made now appears without a reload.
    session_id = create(api, TINY_CONFIG, session_name="after-the-outage")
    expect(page.locator(f"tr[data-session-id='{session_id}']")).to_be_visible()

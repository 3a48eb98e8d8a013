"""The pages people look at, in Debian's Chromium against a running stack: the kiosk updates when an
event is produced (and shows its region's technician view), the technician sees the toast with its
"why", the manager sees an SLA alert appear. Screenshots go to test-artifacts/ and docs/screenshots/."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks.kiosk_probe import CHROMIUM, CHROMIUM_ARGS, ROOT
from tests.conftest import seconds
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" / "screenshots"
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (./dev test does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def _shot(name: str) -> list[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    return [ARTIFACTS / f"{name}.png", DOCS / f"{name}.png"]


async def _save(page: Any, name: str) -> None:
    for path in _shot(name):
        await page.screenshot(path=str(path))


def _csat(staff: str, role: str, rating: int = 5) -> dict[str, Any]:
    n = uuid.uuid4().hex[:8]
    return {
        "event_id": f"page-{n}",
        "type": "survey.csat",
        "occurred_at": datetime.now(UTC).isoformat(),
        "centre_id": "C01",
        "people": [{"staff_id": staff, "role": role}],
        "customer_ref": "cust_a81f30c2",
        "survey_id": f"SV-page-{n}",
        "subject_kind": "jobcard",
        "subject_id": f"JC-page-{n}",
        "rating": rating,
    }


async def test_the_kiosk_updates_live_and_shows_its_region_view(stack: Stack, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    base = f"http://127.0.0.1:{stack.gateway_port}"
    await page.goto(f"{base}/kiosk?token={stack.token('kiosk', 'C01')}")
    await page.wait_for_function("document.getElementById('centre').textContent === 'Pitstop Andheri'")
    assert await page.text_content("#title") == "Pitstop League"  # from the theme
    survey = _csat("S0001", "technician")
    await stack.produce(survey)
    row = page.locator("#rows tr", has_text="Ayaan Gupta")
    await row.wait_for(timeout=seconds(30) * 1000)
    ticker = page.locator("#ticker span", has_text="Ayaan Gupta")
    await ticker.wait_for(timeout=seconds(30) * 1000)
    assert await ticker.text_content() == f"Ayaan Gupta +25 Five-star rating on jobcard {survey['subject_id']}"
    await stack.produce(_csat("S0002", "technician"), _csat("S0002", "technician"))
    await page.locator("#movers li", has_text="Deepak Pillai").wait_for(timeout=seconds(30) * 1000)
    await _save(page, "kiosk")

    region = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await region.goto(f"{base}/kiosk?token={stack.token('kiosk', 'C01')}&view=region&role=technician")
    await region.wait_for_function("document.getElementById('centre').textContent === 'west'")
    assert await region.text_content("#view") == "region · Technician"
    await region.locator("#rows tr", has_text="Ayaan Gupta").wait_for(timeout=seconds(30) * 1000)
    await page.close()
    await region.close()


async def test_the_technician_sees_the_toast_with_its_why(stack: Stack, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    await page.goto(f"http://127.0.0.1:{stack.gateway_port}/technician?token={stack.token('technician', 'S0003')}")
    await page.wait_for_function("document.getElementById('who').textContent === 'S0003'")
    await stack.produce(_csat("S0003", "technician"))
    toast = page.locator("#toast")
    await toast.wait_for(state="visible", timeout=seconds(30) * 1000)
    text = await toast.text_content() or ""
    assert text.startswith("+") and "·" in text  # points, then the why
    first = page.locator("#awards li").first
    assert (await first.text_content() or "").endswith(text.split(" · ", 1)[1].split(" · badge")[0])
    # the standing follows the award: points this month, rank, neighbours, tier progress, KPI targets
    await page.wait_for_function("document.getElementById('month').textContent !== '0'")
    assert (await page.text_content("#rank") or "").startswith("#")
    assert await page.locator("#neighbours li.me").count() == 1
    assert "points to Silver Partner" in (await page.text_content("#tier") or "")
    assert await page.locator("#kpis li").count() == 3  # the technician targets of the default programme
    await _save(page, "technician")
    await page.close()


async def test_the_manager_sees_an_sla_alert_appear(stack: Stack, browser: Any) -> None:
    from dashboards.tokens import issue_token
    from tests.integration.conftest import SECRET

    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    token = issue_token(SECRET, "manager", "west", staff="S0015")  # a regional manager who gives spot awards
    await page.goto(f"http://127.0.0.1:{stack.gateway_port}/manager?token={token}")
    await page.wait_for_function("document.getElementById('who').textContent === 'west'")
    ticket = f"TK-page-{uuid.uuid4().hex[:6]}"
    opened = datetime.now(UTC) - timedelta(minutes=13)  # P1: 15 minutes, near breach at 12
    await stack.produce(
        {
            "event_id": f"open-{ticket}",
            "type": "ticket.opened",
            "occurred_at": opened.isoformat(),
            "centre_id": "C01",
            "people": [{"staff_id": "S0012", "role": "support_agent"}],
            "customer_ref": "cust_a81f30c2",
            "ticket_id": ticket,
            "priority": "P1",
            "channel": "phone",
        }
    )
    alert = page.locator("#open li", has_text=ticket)
    await alert.wait_for(timeout=seconds(30) * 1000)
    assert "Near breach" in (await alert.text_content() or "")
    # the KPI dashboard: one bar row per centre of the region, and today's CSAT on the trend once it is in
    await stack.produce(_csat("S0001", "technician"))

    async def trend_has_today() -> bool:  # the dashboard is sent on connecting (and each minute): reconnect
        await page.reload()
        await page.wait_for_selector("#csat svg", timeout=seconds(10) * 1000)
        return bool(await page.locator("#csat svg circle").count())

    await stack.wait_for("today's CSAT on the trend", trend_has_today, timeout=60)
    west = [c for c in ("Andheri", "Pune Baner", "Ahmedabad SG Road", "Surat Ring Road", "Indore Vijay Nagar")]
    labels = await page.locator("#participation svg text.axis").all_text_contents()
    assert [label for label in labels if any(w.startswith(label) or label.startswith(w) for w in west)] == labels
    assert len(labels) == 5
    await _save(page, "manager")
    await page.close()


async def test_the_manager_gives_a_spot_award_and_sees_the_budget_go_down(stack: Stack, browser: Any) -> None:
    from dashboards.tokens import issue_token
    from tests.integration.conftest import SECRET

    token = issue_token(SECRET, "manager", "C02", staff="S0030")  # the C02 manager, for their centre
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    await page.goto(f"http://127.0.0.1:{stack.gateway_port}/manager?token={token}")
    budget = page.locator("#budget")
    await page.wait_for_function("document.getElementById('budget').textContent.includes('of 2000 points left')")
    before = int((await budget.text_content() or "0").split()[0])
    await page.select_option("#spot-person", "S0017")  # Arun Rao, a technician at C02
    await page.fill("#spot-points", "30")
    await page.fill("#spot-reason", "Found the fault nobody else could")
    await page.click("#spot button")
    await page.locator("#spot-result.ok").wait_for(timeout=seconds(10) * 1000)
    await page.wait_for_function(
        f"document.getElementById('budget').textContent.startsWith('{before - 30} of 2000')",
        timeout=seconds(30) * 1000,
    )
    season = datetime.now(UTC).astimezone(stack_zone()).strftime("%Y-%m")
    assert stack.redis.zscore(stack.key(f"lg:{season}:centre:C02:all"), "S0017") == 30
    await page.fill("#spot-points", "5000")  # over the contract's 1000: refused at once, nothing sent
    await page.click("#spot button")
    await page.locator("#spot-result.error", has_text="from 1 to 1000").wait_for(timeout=seconds(10) * 1000)
    await page.close()


def stack_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Kolkata")

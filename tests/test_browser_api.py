"""The API's pages in headless Chromium: an admin makes a token on the API tokens page, sees it
once, and it works against the running server; the tokens page and the API's docs page fit a
phone and a desktop in light and dark (screenshots in test-output/), and axe-core finds nothing
serious on them."""

import hashlib
import json
import urllib.request

import pytest
from playwright.sync_api import expect

from browser_helpers import deliver, log_in, overflow, screenshot
from conftest import ROOT

pytestmark = pytest.mark.browser

AXE = ROOT / "tests" / "vendor" / "axe-core-4.11.0.min.js"
AXE_SHA256 = "e9e5863c33a874f09bc01acd9234b7e3c871479f5eef8802fa582544465e6d01"


def serious_violations(page) -> list[str]:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256
    page.evaluate(source.decode())
    found = page.evaluate("axe.run(document).then(r => r.violations.map(v => [v.impact, v.id, v.nodes.length]))")
    return [f"{impact} {rule} ({nodes} nodes)" for impact, rule, nodes in found if impact in ("serious", "critical")]


def check_screen(page, name: str, backend: str) -> None:
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            assert overflow(page) <= 0, f"{name} scrolls sideways at {width}px ({scheme})"
            if backend == "sqlite":
                screenshot(page, f"api-{name}-{width}x{height}-{scheme}.png")
        assert serious_violations(page) == [], f"{name} ({scheme})"
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")


def test_an_admin_makes_a_token_that_works_and_the_api_pages_fit(new_context, server, database_url):
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    deliver(server, sender="+37255512345", text="Tere!")
    page = new_context().new_page()
    log_in(page, server)
    page.goto(server.url + "/admin/users")
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()
    page.get_by_label("Name").fill("CRM sync")
    page.get_by_label("send: replies, status, owners, contacts and opt-outs").check()
    page.get_by_label("Expires after (days)").fill("90")
    page.get_by_role("button", name="Make token").click()
    expect(page.get_by_role("heading", name="Token CRM sync made")).to_be_visible()
    secret = page.get_by_label("Token", exact=True).input_value()
    check_screen(page, "tokens", backend)

    request = urllib.request.Request(
        server.url + "/api/v1/conversations", headers={"Authorization": f"Bearer {secret}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert [row["sender"] for row in json.load(answer)["conversations"]] == ["+37255512345"]

    page.reload()  # shown once: a reload (a GET) shows the list, never the token
    expect(page.get_by_label("Token", exact=True)).to_have_count(0)
    expect(page.get_by_role("cell", name="read, send")).to_be_visible()
    page.get_by_role("button", name="Revoke CRM sync").click()
    expect(page.get_by_role("cell", name="Revoked")).to_be_visible()

    page.goto(server.url + "/api/v1/docs")
    expect(page.get_by_role("heading", name="sms-inbox API (v1)", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="POST /api/v1/conversations/{conversation_id}/messages")).to_be_visible()
    check_screen(page, "docs", backend)

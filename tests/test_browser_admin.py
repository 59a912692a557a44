"""The admin and account pages in headless Chromium: how they look (screenshots in test-output/),
that nothing scrolls sideways on a phone, axe-core finds nothing serious, and the flows a person
clicks through work: add a colleague, pass on their link, they set a password and log in."""

import hashlib
import re

import pyotp
import pytest
from playwright.sync_api import expect

from browser_helpers import deliver, log_in, overflow, screenshot
from conftest import PASSWORD, ROOT

pytestmark = pytest.mark.browser

AXE = ROOT / "tests" / "vendor" / "axe-core-4.11.0.min.js"
AXE_SHA256 = "e9e5863c33a874f09bc01acd9234b7e3c871479f5eef8802fa582544465e6d01"
SIZES = ((1280, 800), (390, 844))
SCHEMES = ("light", "dark")


def serious_violations(page) -> list[str]:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256
    page.evaluate(source.decode())  # evaluated by the test, not loaded by the page: the CSP stays strict
    found = page.evaluate("axe.run(document).then(r => r.violations.map(v => [v.impact, v.id, v.nodes.length]))")
    return [f"{impact} {rule} ({nodes} nodes)" for impact, rule, nodes in found if impact in ("serious", "critical")]


def check_screen(context, page, name: str, backend: str):
    """At both sizes in both schemes: a screenshot, no sideways scroll, no serious axe finding.
    The pages are the same on either database: on PostgreSQL only the phone width is checked."""
    if backend != "sqlite":
        page.set_viewport_size({"width": 390, "height": 844})
        assert overflow(page) <= 0, f"{name} scrolls sideways at 390px"
        page.set_viewport_size({"width": 1280, "height": 800})
        return
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            assert overflow(page) <= 0, f"{name} scrolls sideways at {width}px ({scheme})"
            screenshot(page, f"admin-{name}-{width}x{height}-{scheme}-{backend}.png")
        assert serious_violations(page) == [], f"{name} ({scheme})"
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")


def test_an_admin_adds_a_colleague_who_sets_a_password_and_the_screens_fit(new_context, server, database_url):
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    deliver(server, sender="+37255512345", text="Palun kustutage minu andmed")
    admin = new_context()
    page = admin.new_page()
    log_in(page, server)
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    page.get_by_label("Username").fill("bob")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("heading", name="Added bob")).to_be_visible()
    link = page.get_by_label("One-time link").input_value()
    check_screen(admin, page, "link", backend)
    page.goto(server.url + "/admin/users")
    check_screen(admin, page, "users", backend)
    page.get_by_role("link", name="bob").click()
    expect(page.get_by_role("heading", name="bob")).to_be_visible()
    check_screen(admin, page, "user", backend)

    colleague = new_context().new_page()
    colleague.goto(link)
    check_screen(colleague.context, colleague, "set-password", backend)
    colleague.get_by_label("New password", exact=True).fill("bobs own password")
    colleague.get_by_label("New password again").fill("bobs own password")
    colleague.get_by_role("button", name="Set password").click()
    expect(colleague.get_by_role("status")).to_have_text("Your password is set: log in with it.")
    colleague.get_by_label("Username").fill("bob")
    colleague.get_by_label("Password").fill("bobs own password")
    colleague.get_by_role("button", name="Log in").click()
    expect(colleague.get_by_text("Signed in as bob")).to_be_visible()
    expect(colleague.get_by_role("link", name="Admin")).to_have_count(0)
    colleague.goto(server.url + "/admin/users")
    check_screen(colleague.context, colleague, "forbidden", backend)

    page.goto(server.url + "/account")
    expect(page.get_by_text("This session", exact=True)).to_be_visible()
    check_screen(admin, page, "account", backend)
    page.goto(server.url + "/admin/audit")
    expect(page.get_by_role("cell", name="Added a user")).to_be_visible()
    check_screen(admin, page, "audit", backend)
    page.goto(server.url + "/admin/retention")
    check_screen(admin, page, "retention", backend)
    page.goto(server.url + "/admin/jobs")  # the server's own runners, heard from: no banner
    expect(page.get_by_role("heading", name="Background jobs", level=1)).to_be_visible()
    expect(page.get_by_text("No job runner has been heard from")).to_have_count(0)
    check_screen(admin, page, "jobs", backend)
    page.goto(server.url + "/admin/conversations/1/delete")
    expect(page.get_by_text("1 message", exact=True)).to_be_visible()
    check_screen(admin, page, "delete", backend)
    page.get_by_role("button", name=re.compile("Delete 1 message for good")).click()
    expect(page.get_by_role("status")).to_contain_text("are gone")


def test_two_factor_sign_in_set_up_with_an_app_and_the_screens_fit(new_context, server, database_url):
    """Set up with the key typed in as into an authenticator app; then the code step at login."""
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    context = new_context()
    page = context.new_page()
    log_in(page, server)
    page.goto(server.url + "/account")
    page.get_by_role("link", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Turn on two-factor sign-in", level=1)).to_be_visible()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    check_screen(context, page, "two-factor", backend)
    secret = page.locator("#totp-key").inner_text().replace(" ", "")
    page.get_by_label("Enter the code the app shows").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
    codes = page.locator(".backup-codes code").all_inner_texts()
    assert len(codes) == 10
    check_screen(context, page, "backup-codes", backend)
    page.goto(server.url + "/account")
    expect(page.get_by_text("10 backup codes left")).to_be_visible()
    check_screen(context, page, "account-two-factor", backend)

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Enter your code", level=1)).to_be_visible()
    check_screen(context, page, "code", backend)
    # The app's code of this moment was spent turning it on: a backup code, as without the phone.
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")

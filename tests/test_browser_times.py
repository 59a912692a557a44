"""Times in the pages, as docs/privacy.md says: the reader's own time zone, UTC in the tooltip."""

import json
import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from app.db.models import AuditEvent
from app.extensions import db
from browser_helpers import log_in

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the page, not the database
def test_the_audit_trail_shows_times_in_the_readers_zone_with_utc_in_the_tooltip(app, server, page):
    # The latest 15 January (winter: Tallinn is UTC+2), within the year the server's daily purge
    # keeps audit events for (AUDIT_RETENTION_DAYS), whenever its runner happens to purge.
    today = datetime.now(UTC)
    year = today.year if (today.month, today.day) > (1, 15) else today.year - 1
    with app.app_context():
        db.session.add(
            AuditEvent(
                at=datetime(year, 1, 15, 10, 0, 5),
                username="alice",
                address="127.0.0.1",
                action="settings_changed",
                details=json.dumps({"retention_days": 30}),
            )
        )
        db.session.commit()
    log_in(page, server)  # the browser is in Europe/Tallinn: UTC+2 in January
    page.goto(server.url + f"/admin/audit?from={year}-01-15&to={year}-01-15")
    when = page.locator("td[data-label=When] time")
    expect(when).to_have_text(
        "15 Jan, 12:00" if year == today.year else f"15 Jan {year}, 12:00"
    )  # this year's: no year
    expect(when).to_have_attribute("title", re.compile(rf"\b{year}-01-15 10:00:05 UTC$"))

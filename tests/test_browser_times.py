"""Times in the pages, as docs/privacy.md says: the reader's own time zone, UTC in the tooltip."""

import json
import re
from datetime import datetime

import pytest
from playwright.sync_api import expect

from app.db.models import AuditEvent
from app.extensions import db
from browser_helpers import log_in

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the page, not the database
def test_the_audit_trail_shows_times_in_the_readers_zone_with_utc_in_the_tooltip(app, server, page):
    with app.app_context():
        db.session.add(
            AuditEvent(
                at=datetime(2025, 1, 15, 10, 0, 5),
                username="alice",
                address="127.0.0.1",
                action="settings_changed",
                details=json.dumps({"retention_days": 30}),
            )
        )
        db.session.commit()
    log_in(page, server)  # the browser is in Europe/Tallinn: UTC+2 in January
    page.goto(server.url + "/admin/audit?from=2025-01-15&to=2025-01-15")
    when = page.locator("td[data-label=When] time")
    expect(when).to_have_text("15 Jan 2025, 12:00")
    expect(when).to_have_attribute("title", re.compile(r"\b2025-01-15 10:00:05 UTC$"))

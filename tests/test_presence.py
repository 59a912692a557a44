"""Presence: who else has a conversation open, carried by the thread's poll (app/inbox/presence.py).

Time is the app's injected clock (helpers.Clock); nothing sleeps.
"""

import re
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from app.clock import now
from app.extensions import db
from app.inbox import presence, queries
from helpers import Clock, deliver, thread_path, user_id

HX = {"HX-Request": "true"}


@pytest.fixture
def clock(app):
    moving = Clock()
    app.config["CLOCK"] = moving
    return moving


def page_state(html: str) -> tuple[str, dict]:
    """The thread poller's URL and what the page shows (header buttons, presence version)."""
    poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', html).group(1))
    shown = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)" data-showing>', html))
    return poll, shown


def poll(client, url: str, shown: dict, **presence_args):
    return client.get(url + "&" + urlencode({**shown, **presence_args}), headers=HX)


def presence_text(html: str) -> list[str]:
    found = re.search(r'<p id="presence"[^>]*>(.*?)</p>', html, re.S)
    return re.findall(r'<span class="present">([^<]*)</span>', found.group(1)) if found else []


def test_touch_others_and_expiry_by_the_clock(app, clock, agent):
    deliver(app)
    with app.app_context():
        conversation, alice, bob = 1, user_id(app, "alice"), user_id(app, "bob")
        t0 = now()
        assert presence.others(conversation, alice, t0) == []
        assert presence.touch(conversation, bob, False, t0) is True
        assert presence.others(conversation, alice, t0) == [presence.Present(bob, "viewing")]
        assert presence.others(conversation, bob, t0) == []  # nobody sees themselves
        assert presence.others(2, alice, t0) == []  # another conversation

        clock.advance(seconds=4)  # the next poll: nothing changed, nothing written
        assert presence.touch(conversation, bob, False, now()) is False
        assert presence.touch(conversation, bob, True, now()) is True  # typing: written at once
        assert presence.others(conversation, alice, now()) == [presence.Present(bob, "typing")]
        clock.advance(seconds=4)
        assert presence.touch(conversation, bob, True, now()) is False
        clock.advance(seconds=4)  # 8 s after the last write: refreshed, well inside 20 s
        assert presence.touch(conversation, bob, True, now()) is True

        clock.advance(seconds=19)
        assert presence.others(conversation, alice, now()) == [presence.Present(bob, "typing")]
        clock.advance(seconds=1)  # 20 s without a word from bob's page: gone
        assert presence.others(conversation, alice, now()) == []


def test_version_follows_who_is_there_doing_what(app):
    viewing, typing = [presence.Present(2, "viewing")], [presence.Present(2, "typing")]
    assert presence.version([]) == ""
    assert presence.version(viewing) == presence.version(list(viewing))
    assert (
        len({presence.version(viewing), presence.version(typing), presence.version([presence.Present(3, "viewing")])})
        == 3
    )


def test_presence_never_moves_the_change_counter(app, clock, admin, agent):
    deliver(app)
    path = thread_path(app)
    with app.app_context():
        before = queries.latest_change()
    agent.client.get(path)
    poll_url, shown = page_state(admin.client.get(path).text)
    assert poll(agent.client, poll_url, {}, viewing="1", typing="1").status_code == 204  # nothing else changed
    clock.advance(seconds=30)
    admin.client.get(path)
    with app.app_context():
        assert queries.latest_change() == before
        conversation = queries.conversation_by_sender("+37255512345")
        assert len(presence.others(conversation.id, 0, now())) == 1  # alice, just now


def test_an_idle_poll_with_someone_else_present_stays_204(app, clock, admin, agent):
    deliver(app)
    path = thread_path(app)
    agent.client.get(path)  # bob opens the conversation
    page = admin.client.get(path).text
    assert presence_text(page) == ["bob is viewing"]
    poll_url, shown = page_state(page)
    assert shown["presence"]
    for _ in range(4):  # bob's and alice's polls, nothing changing: 204 for both, refreshes included
        clock.advance(seconds=4)
        assert poll(agent.client, poll_url, {}, viewing="1", typing="0").status_code == 204
        assert poll(admin.client, poll_url, shown, viewing="1", typing="0").status_code == 204


def test_a_poll_brings_the_presence_line_alone_when_only_presence_changed(app, clock, admin, agent):
    deliver(app)
    path = thread_path(app)
    agent.client.get(path)
    poll_url, shown = page_state(admin.client.get(path).text)

    poll(agent.client, poll_url, {}, viewing="1", typing="1")  # bob types
    update = poll(admin.client, poll_url, shown, viewing="1", typing="0")
    assert update.status_code == 200
    assert presence_text(update.text) == ["bob is typing…"]
    assert 'id="presence" class="presence" role="status" hx-swap-oob="innerHTML"' in update.text
    assert "thread-poller" not in update.text and "<li" not in update.text  # the line, nothing else
    shown["presence"] = page_state_version(update.text)
    assert poll(admin.client, poll_url, shown, viewing="1", typing="0").status_code == 204

    clock.advance(seconds=4)
    poll(agent.client, poll_url, {}, viewing="1", typing="0")  # bob stops typing
    update = poll(admin.client, poll_url, shown, viewing="1", typing="0")
    assert presence_text(update.text) == ["bob is viewing"]

    clock.advance(seconds=21)  # bob's page went away: no poll from it since
    update = poll(admin.client, poll_url, {**shown, "presence": page_state_version(update.text)}, viewing="1")
    assert update.status_code == 200 and presence_text(update.text) == []
    assert page_state_version(update.text) == ""


def page_state_version(html: str) -> str:
    return re.search(r'name="presence" value="([^"]*)"', html).group(1)


def test_a_poll_with_news_carries_the_presence_line_only_when_it_changed(app, clock, admin, agent):
    deliver(app)
    path = thread_path(app)
    agent.client.get(path)
    poll_url, shown = page_state(admin.client.get(path).text)
    deliver(app, text="news")
    update = poll(admin.client, poll_url, shown, viewing="1")
    assert "news" in update.text and 'id="presence"' not in update.text

    poll(agent.client, poll_url, {}, viewing="1", typing="1")
    update = poll(admin.client, poll_url, shown, viewing="1")  # the same cursor: news and the line
    assert "news" in update.text and presence_text(update.text) == ["bob is typing…"]


def test_nobody_sees_themselves_and_a_hidden_page_says_nothing(app, clock, admin, agent):
    deliver(app)
    path = thread_path(app)
    page = admin.client.get(path).text
    assert presence_text(page) == [] and "alice is" not in page
    poll_url, shown = page_state(page)
    assert poll(admin.client, poll_url, shown, viewing="1", typing="1").status_code == 204

    bob_page = agent.client.get(path).text
    assert presence_text(bob_page) == ["alice is typing…"]
    clock.advance(seconds=25)
    _, bob_shown = page_state(bob_page)
    # alice's tab is hidden now: its polls carry no `viewing`, so she drops out when her row expires.
    assert poll(admin.client, poll_url, shown).status_code == 204
    update = poll(agent.client, poll_url, bob_shown)
    assert update.status_code == 200 and presence_text(update.text) == []


def test_presence_lives_beside_the_database_not_in_it(app, clock, agent, backend):
    deliver(app)
    agent.client.get(thread_path(app))
    with app.app_context():
        if backend == "sqlite":
            main = Path(db.engine.url.database)
            assert (main.parent / f"{main.stem}-presence.sqlite3").exists()
            assert not sa.inspect(db.engine).has_table("presence")
        else:  # an UNLOGGED table in the test's own schema, holding bob's row
            schema = db.session.scalar(sa.text("SELECT current_schema()"))
            persistence = db.session.scalar(
                sa.text("SELECT relpersistence FROM pg_class WHERE oid = to_regclass(:name)"),
                {"name": f"{schema}.presence"},
            )
            assert persistence == "u"
            assert db.session.scalar(sa.text(f"SELECT count(*) FROM {schema}.presence")) == 1

"""Putting conversations aside: Open/Done, the views, their counts, channel and our-number filters."""

import re
from html import unescape

import pytest
import sqlalchemy as sa

from app.db.models import Conversation
from app.extensions import db
from app.inbox import list_views, queries, read_state
from app.inbox.list_views import ListFilter
from conftest import body_for, csrf_token
from helpers import plans_of_requests, text_index_reads

SUPPORT, SALES = "+37250000001", "+37250000002"
TO_SUPPORT, TO_SALES = "to=%2B37250000001", "to=%2B37250000002"  # as a form sends them


@pytest.fixture
def inbox(client, auth, deliver):
    """Logged in, with three customers: one wrote to both our numbers (SMS, then WhatsApp)."""
    auth.login()
    deliver(body_for(sender="+3725550001", recipient=SUPPORT, channel="sms", text="to support"))
    deliver(body_for(sender="+3725550001", recipient=SALES, channel="whatsapp", text="to sales"))
    deliver(body_for(sender="+3725550002", recipient=SUPPORT, channel="sms", text="only support"))
    deliver(body_for(sender="+3725550003", recipient=SALES, channel="viber", text="STOP"))
    return deliver


def conversation_id(client, sender: str) -> int:
    with client.application.app_context():
        return db.session.scalar(sa.select(Conversation.id).where(Conversation.sender == sender))


def listed(html: str) -> list[int]:
    """The conversations a list page shows, in order."""
    return [int(found) for found in re.findall(r'id="conversation-link-(\d+)"', html)]


def counts(html: str) -> dict[str, int]:
    tabs = re.search(r'<nav id="view-tabs".*?</nav>', html, re.S).group(0)
    return {label: int(count) for label, count in re.findall(r'>([A-Za-z ]+) <span class="count">(\d+)</span>', tabs)}


def status_form(client, path: str) -> tuple[str, dict]:
    html = client.get(path).text
    form = re.search(r'<form id="status" method="post" action="([^"]+)".*?name="status" value="(\w+)"', html, re.S)
    return unescape(form.group(1)), {"csrf_token": csrf_token(html), "status": form.group(2)}


def test_done_leaves_the_open_view_and_a_new_message_brings_it_back(client, inbox):
    first, second = conversation_id(client, "+3725550001"), conversation_id(client, "+3725550002")
    assert counts(client.get("/").text) == {
        "Open": 3,
        "Snoozed": 0,
        "Done": 0,
        "All": 3,
        "Unread": 3,
        "Mentions": 0,
        "Opted out": 1,
    }
    path = f"/conversations/{first}"
    action, form = status_form(client, path)
    assert form["status"] == "done"
    latest = re.search(r'hx-get="/\?since=(\d+)', client.get("/").text).group(1)

    response = client.post(action, data=form)
    assert response.status_code == 303 and response.headers["Location"] == path
    assert client.get(f"/?since={latest}").status_code == 200  # open lists see it at their next poll
    open_view = client.get("/").text
    assert first not in listed(open_view) and second in listed(open_view)
    assert counts(open_view) == {
        "Open": 2,
        "Snoozed": 0,
        "Done": 1,
        "All": 3,
        "Unread": 3,
        "Mentions": 0,
        "Opted out": 1,
    }
    assert listed(client.get("/?view=done").text) == [first]
    assert first in listed(client.get("/?view=all").text)
    assert "Reopen" in client.get(path).text

    inbox(body_for(sender="+372 555 0001", recipient=SUPPORT, text="one more thing"))
    assert listed(client.get("/").text)[0] == first
    assert listed(client.get("/?view=done").text) == []
    assert "Mark done" in client.get(path).text


def test_reopen_by_hand_and_with_htmx(client, inbox):
    path = f"/conversations/{conversation_id(client, '+3725550002')}"
    action, form = status_form(client, path)
    done = client.post(action, data=form, headers={"HX-Request": "true"})
    assert done.status_code == 200 and done.text.lstrip().startswith('<form id="status"')
    assert "Reopen" in done.text and done.headers["HX-Trigger"] == "conversation-changed"
    action, form = status_form(client, path)
    assert form["status"] == "open"
    assert client.post(action, data=form).status_code == 303
    assert conversation_id(client, "+3725550002") in listed(client.get("/").text)


def test_status_needs_csrf_and_a_known_status(client, inbox):
    path = f"/conversations/{conversation_id(client, '+3725550002')}"
    action, form = status_form(client, path)
    assert client.post(action, data={"status": "done"}).status_code == 400
    assert client.post(action, data={**form, "status": "archived"}).status_code == 400
    assert "Mark done" in client.get(path).text


def test_unread_and_opted_out_views(client, inbox):
    stopped = conversation_id(client, "+3725550003")
    assert listed(client.get("/?view=opted-out").text) == [stopped]
    with client.application.app_context():
        read_state.mark_read(stopped, through_id=2**62)
    unread = listed(client.get("/?view=unread").text)
    assert stopped not in unread and len(unread) == 2


def test_filter_by_our_number_lists_conversations_with_messages_to_it(client, inbox):
    both, support_only, sales_only = (
        conversation_id(client, sender) for sender in ("+3725550001", "+3725550002", "+3725550003")
    )
    assert sorted(listed(client.get(f"/?view=all&{TO_SUPPORT}").text)) == sorted([both, support_only])
    sales = client.get(f"/?view=all&{TO_SALES}").text
    assert sorted(listed(sales)) == sorted([both, sales_only])
    assert counts(sales) == {"Open": 2, "Snoozed": 0, "Done": 0, "All": 2, "Unread": 2, "Mentions": 0, "Opted out": 1}
    # The channel is the conversation's latest one, as the list shows it.
    assert listed(client.get("/?view=all&channel=whatsapp").text) == [both]
    assert listed(client.get(f"/?view=all&channel=sms&{TO_SALES}").text) == []
    # The menus offer what there is.
    page = client.get("/").text
    assert f'<option value="{SALES}">To +372 5000 0002</option>' in page
    assert '<option value="viber">viber</option>' in page


def test_the_view_and_filters_stay_in_polls_links_and_search(client, inbox):
    page = client.get(f"/?view=done&channel=sms&{TO_SUPPORT}&q=372").text
    poll = unescape(re.search(r'<section id="conversations"[^>]*hx-get="([^"]+)"', page).group(1))
    assert poll.startswith("/?since=") and "view=done" in poll and "channel=sms" in poll and "to=%2B37250000001" in poll
    # The search box searches within the view.
    search = re.search(r'<form role="search".*?</form>', page, re.S).group(0)
    assert '<input type="hidden" name="view" value="done">' in search
    assert '<input type="hidden" name="channel" value="sms">' in search
    # An unknown view is the default one.
    assert counts(client.get("/?view=nonsense").text)["Open"] == 3
    assert 'aria-current="page">Open' in client.get("/?view=nonsense").text


def test_a_conversation_opened_from_a_filtered_list_keeps_the_list_beside_it(client, inbox):
    support_only = conversation_id(client, "+3725550002")
    page = client.get(f"/?view=all&{TO_SUPPORT}").text
    link = unescape(re.search(rf'<a id="conversation-link-{support_only}"[^>]*href="([^"]+)"', page).group(1))
    assert "view=all" in link and "to=%2B37250000001" in link
    thread = client.get(link).text
    assert sorted(listed(thread)) == sorted([conversation_id(client, "+3725550001"), support_only])


def test_counts_are_counted_once_per_change_number(app, inbox):
    with app.test_request_context():
        latest = queries.latest_change()
        first = list_views.view_facts(ListFilter(), latest)
        assert list_views.view_facts(ListFilter(), latest) is first  # a repeat is not counted again
        assert first.counts == {
            "open": 3,
            "snoozed": 0,
            "done": 0,
            "all": 3,
            "unread": 3,
            "opted-out": 1,
            "mentions": 0,
        }
    inbox(body_for(sender="+3725550009", recipient=SUPPORT))
    with app.test_request_context():
        assert list_views.view_facts(ListFilter(), queries.latest_change()).counts["open"] == 4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_view_and_filter_reads_through_an_index(app, client, auth, seeded):
    """No view, filter or count reads a whole table or sorts a whole result (see test_query_plans)."""

    with app.app_context():
        db.session.execute(sa.update(Conversation).where(Conversation.id % 7 == 0).values(status="done"))
        db.session.commit()
    auth.login()
    paths = [(f"/?view={view}", 200) for view in list_views.VIEWS] + [
        ("/?view=all&channel=telegram", 200),
        ("/?channel=sms&to=%2B37250000000", 200),
        ("/?view=done&q=372", 200),
    ]
    # A search's matches come from the conversation text index, sorted (at most FEW_MATCHES).
    assert {
        key: bad for key, bad in plans_of_requests(app, client, paths).items() if bad != text_index_reads(bad)
    } == {}

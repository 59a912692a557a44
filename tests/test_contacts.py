"""Contacts: a name and a note per conversation, edited in its header, shown in list and thread."""

import re
from html import unescape

import pytest
import sqlalchemy as sa

from app import contacts
from app.db.models import CONTACT_NAME_LENGTH, Conversation
from app.extensions import db
from conftest import body_for, csrf_token


@pytest.fixture
def inbox(client, auth, deliver):
    """A logged-in client with one conversation (+372 5566 4418); its path."""
    auth.login()
    deliver(body_for(sender="+37255664418", text="Where is my parcel?"))
    deliver(body_for(sender="+3725550001", text="Another customer"))
    with client.application.app_context():
        conversation_id = db.session.scalar(sa.select(Conversation.id).where(Conversation.sender == "+37255664418"))
    return f"/conversations/{conversation_id}"


def contact_form(html: str) -> tuple[str, str]:
    action = unescape(re.search(r'<form method="post" action="([^"]+/contact)"', html).group(1))
    return action, csrf_token(html)


def test_naming_a_contact_with_a_plain_form_shows_the_name_in_thread_and_list(app, client, inbox):
    page = client.get(inbox).text
    assert "Add name or note" in page
    action, token = contact_form(page)
    latest = re.search(r'hx-get="/\?since=(\d+)', client.get("/").text).group(1)

    response = client.post(
        action,
        data={"csrf_token": token, "contact_name": "  Ülle   Tamm ", "contact_note": "Prefers SMS.\r\nVIP since 2021."},
    )
    assert response.status_code == 303 and response.headers["Location"] == inbox

    thread = client.get(inbox).text
    assert '<h2 id="conversation-heading" tabindex="-1"><bdi>Ülle Tamm</bdi></h2>' in thread
    assert "+372 5566 4418" in thread  # the number still shown beside the name
    assert "Prefers SMS.\nVIP since 2021." in thread
    assert "<title>⁨Ülle Tamm⁩ · " in thread
    conversation_id = inbox.rsplit("/", 1)[1]
    link = re.search(rf'<a id="conversation-link-{conversation_id}"[^>]*>(.*?)</a>', client.get("/").text, re.S)
    assert link.group(1).endswith("<bdi>Ülle Tamm</bdi>")  # the list shows the name, with the flag before it
    # Open lists learn of it at their next poll: the name changed what the list shows.
    assert client.get(f"/?since={latest}").status_code == 200
    with app.app_context():
        stored = db.session.scalar(sa.select(Conversation).where(Conversation.sender == "+37255664418"))
        assert (stored.contact_name, stored.contact_note) == ("Ülle Tamm", "Prefers SMS.\nVIP since 2021.")


def test_editing_with_htmx_swaps_the_header_in_place_and_asks_the_list_to_poll(client, inbox):
    action, token = contact_form(client.get(inbox).text)
    response = client.post(
        action, data={"csrf_token": token, "contact_name": "Ülle", "contact_note": ""}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    # The header, which also tells the page its new title (kept there across list polls).
    assert '<div id="contact" class="who" data-page-title="\u2068Ülle\u2069 · (2) Inbox · sms-inbox">' in response.text
    assert "<bdi>Ülle</bdi>" in response.text and "Edit name and note" in response.text
    # The page's title and its heading name the person too.
    assert "<title>\u2068Ülle\u2069 · (2) Inbox · sms-inbox</title>" in response.text
    assert re.search(
        r'<h1 id="page-heading" class="visually-hidden" hx-swap-oob="true">Conversation with <bdi>Ülle</bdi>',
        response.text,
    )
    assert response.headers["HX-Trigger"] == "conversation-changed"


def test_clearing_the_name_shows_the_number_again(client, inbox):
    action, token = contact_form(client.get(inbox).text)
    client.post(action, data={"csrf_token": token, "contact_name": "Ülle", "contact_note": "x"})
    client.post(action, data={"csrf_token": token, "contact_name": "   ", "contact_note": ""})
    assert '<h2 id="conversation-heading" tabindex="-1"><bdi>+372 5566 4418</bdi></h2>' in client.get(inbox).text


def test_a_name_too_long_is_refused_with_the_reason_and_what_was_typed_kept(client, inbox):
    action, token = contact_form(client.get(inbox).text)
    name = "N" * (CONTACT_NAME_LENGTH + 1)
    plain = client.post(action, data={"csrf_token": token, "contact_name": name, "contact_note": "kept note"})
    assert plain.status_code == 400
    assert f"longer than {CONTACT_NAME_LENGTH} characters" in plain.text
    assert f'value="{name}"' in plain.text and "kept note</textarea>" in plain.text
    htmx = client.post(
        action,
        data={"csrf_token": token, "contact_name": name, "contact_note": "kept note"},
        headers={"HX-Request": "true"},
    )
    assert (
        htmx.status_code == 200 and 'role="alert"' in htmx.text and '<details class="contact-edit" open>' in htmx.text
    )
    assert "Add name or note" in client.get(inbox).text  # nothing stored


def test_editing_a_contact_needs_the_csrf_token(client, inbox):
    action, _ = contact_form(client.get(inbox).text)
    assert client.post(action, data={"contact_name": "Mallory"}).status_code == 400
    assert "Mallory" not in client.get(inbox).text


def test_names_and_notes_are_escaped(client, inbox):
    action, token = contact_form(client.get(inbox).text)
    client.post(
        action,
        data={"csrf_token": token, "contact_name": "<script>x()</script>", "contact_note": "<img src=x onerror=y()>"},
    )
    page = client.get(inbox).text
    assert "<script>x()" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<img src=x" not in page


def test_set_contact_stores_trimmed_values_and_none_for_empty(app, inbox):
    with app.app_context():
        conversation_id = db.session.scalar(sa.select(Conversation.id).where(Conversation.sender == "+37255664418"))
        before = db.session.get(Conversation, conversation_id).change_seq
        contacts.set_contact(conversation_id, " Ülle\tTamm\n", "  ")
        stored = db.session.get(Conversation, conversation_id)
        assert (stored.contact_name, stored.contact_note) == ("Ülle Tamm", None)
        assert stored.change_seq > before
        with pytest.raises(contacts.ContactRefused):
            contacts.set_contact(conversation_id, "ok", "n" * 2001)


def test_search_finds_a_conversation_by_the_contact_name_accents_and_case_aside(client, inbox):
    action, token = contact_form(client.get(inbox).text)
    client.post(action, data={"csrf_token": token, "contact_name": "Ülle Tamm", "contact_note": ""})
    named = int(inbox.rsplit("/", 1)[1])
    for query in ("ülle", "ULLE", "tamm", "Ülle T"):
        rows = [int(found) for found in re.findall(r'id="conversation-link-(\d+)"', client.get(f"/?q={query}").text)]
        assert rows == [named], query
    assert re.findall(r'id="conversation-link-(\d+)"', client.get("/?q=%25").text) == []  # % is no wildcard
    assert re.findall(r'id="conversation-link-(\d+)"', client.get("/?q=5566").text) == [str(named)]  # digits still

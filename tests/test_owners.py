"""Owners: assigning a conversation (to me, a teammate, nobody), views by owner and their counts,
a reply that takes ownership, going off shift, and the export's `assignee` column."""

import json
import re
from html import unescape
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from app import replies
from app.contacts import owners
from app.db.models import AuditEvent, Conversation, User
from app.extensions import db
from conftest import body_for, conversation_of, csrf_token
from helpers import Clock

HTMX = {"HX-Request": "true"}


@pytest.fixture
def team(app, client, admin, agent, deliver):
    """alice (admin) and bob (agent), both logged in, and three customers, all unassigned."""
    for sender in ("+3725550001", "+3725550002", "+3725550003"):
        deliver(body_for(sender=sender, text=f"from {sender}"))
    with app.app_context():
        people = dict(db.session.execute(sa.select(User.username, User.id)).all())
        ids = [conversation_of(sender).id for sender in ("+3725550001", "+3725550002", "+3725550003")]
    return {"alice": client, "bob": agent.client, "ids": ids, **{f"{name}_id": id_ for name, id_ in people.items()}}


def owner_of(app, conversation_id: int) -> int | None:
    with app.app_context():
        return db.session.scalar(sa.select(Conversation.assignee_id).where(Conversation.id == conversation_id))


def events(app, action: str) -> list[tuple[str | None, dict]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.username, AuditEvent.details)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
        return [(username, json.loads(details)) for username, details in rows]


def listed(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'id="conversation-link-(\d+)"', html)]


def tab_counts(html: str, nav: str) -> dict[str, int]:
    tabs = re.search(rf'<nav id="{nav}".*?</nav>', html, re.S).group(0)
    return {label: int(count) for label, count in re.findall(r'>([A-Za-z ]+) <span class="count">(\d+)</span>', tabs)}


def assign_form(client, conversation_id: int) -> tuple[str, str]:
    html = client.get(f"/conversations/{conversation_id}").text
    action = re.search(r'<div id="assign-to".*?<form method="post" action="([^"]+)"', html, re.S).group(1)
    return unescape(action), csrf_token(html)


def test_assign_and_unassign_are_audited_with_who_and_stamp_the_change_number(app, team):
    first = team["ids"][0]
    with app.app_context():
        before = db.session.get(Conversation, first).change_seq
        assert owners.assign(first, team["bob_id"], team["alice_id"])
        assert not owners.assign(first, team["bob_id"], team["alice_id"])  # so already: nothing recorded
        assert db.session.get(Conversation, first).change_seq > before
        assert owners.assign(first, None, None)  # the app itself: auto-assignment
    assert owner_of(app, first) is None
    assert events(app, "assigned") == [
        ("alice", {"conversation": first, "assignee": "bob", "by": "alice"}),
    ]
    assert events(app, "unassigned") == [(None, {"conversation": first, "was": "bob", "by": "auto-assignment"})]


def test_an_agent_assigns_to_themselves_to_a_teammate_and_unassigns_with_plain_forms(app, team):
    bob, first = team["bob"], team["ids"][0]
    page = bob.get(f"/conversations/{first}").text
    assert "Assign to me" in page and '<option value="none" selected>Unassigned</option>' in page
    action, token = assign_form(bob, first)
    assert action.startswith(f"/conversations/{first}/assignee")

    response = bob.post(action, data={"csrf_token": token, "assignee": "me"})
    assert response.status_code == 303 and owner_of(app, first) == team["bob_id"]
    page = bob.get(f"/conversations/{first}").text
    assert "Assign to me" not in page and "Owner: bob (you)" in page and ">Unassign</button>" in page

    # With htmx: the owner and the picker come back, swapped by id; the list polls at once.
    response = bob.post(action, data={"csrf_token": token, "assignee": str(team["alice_id"])}, headers=HTMX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "conversation-changed"
    assert 'id="owner"' in response.text and 'id="assign-to" class="assign-to" hx-swap-oob="true"' in response.text
    assert "Owner: alice" in response.text and owner_of(app, first) == team["alice_id"]

    assert bob.post(action, data={"csrf_token": token, "assignee": "none"}).status_code == 303
    assert owner_of(app, first) is None
    assert [details["by"] for _, details in events(app, "assigned") + events(app, "unassigned")] == ["bob"] * 3
    assert bob.post(action, data={"csrf_token": token, "assignee": "x"}).status_code == 400


def test_a_disabled_account_is_not_offered_and_cannot_be_given_a_conversation(app, team, user_row):
    with app.app_context():
        user_row("carol", role="agent")
        carol = db.session.scalar(sa.select(User).where(User.username == "carol"))
        carol.disabled = True
        db.session.commit()
        carol_id = carol.id
    action, token = assign_form(team["bob"], team["ids"][0])
    assert ">carol<" not in team["bob"].get(f"/conversations/{team['ids'][0]}").text
    assert team["bob"].post(action, data={"csrf_token": token, "assignee": str(carol_id)}).status_code == 400
    assert owner_of(app, team["ids"][0]) is None


def test_views_by_owner_list_and_count_per_person_and_combine_with_status_views(app, team):
    alice, bob, (first, second, third) = team["alice"], team["bob"], team["ids"]
    with app.app_context():
        owners.assign(first, team["alice_id"], team["alice_id"])
        owners.assign(second, team["bob_id"], team["bob_id"])
    assert sorted(listed(alice.get("/?assignee=me").text)) == [first]
    assert sorted(listed(bob.get("/?assignee=me").text)) == [second]
    assert listed(alice.get("/?assignee=none").text) == [third]
    assert listed(alice.get(f"/?assignee={team['bob_id']}").text) == [second]
    assert sorted(listed(alice.get("/").text)) == [first, second, third]
    page = alice.get("/?assignee=me").text
    assert tab_counts(page, "owner-tabs") == {"Mine": 1, "Unassigned": 1, "All": 3}
    assert tab_counts(bob.get("/").text, "owner-tabs") == {"Mine": 1, "Unassigned": 1, "All": 3}
    assert 'href="/?assignee=me" aria-current="page">Mine' in page
    # The status views keep the owner, and a conversation opened from the list keeps both.
    assert 'href="/?view=done&amp;assignee=me"' in page
    assert f'href="/conversations/{first}?assignee=me"' in page

    with app.app_context():
        from app import contacts

        contacts.set_status(first, "done")
    assert listed(alice.get("/?assignee=me").text) == []  # Open is the default view
    done = alice.get("/?view=done&assignee=me").text
    assert listed(done) == [first]
    assert tab_counts(done, "view-tabs") == {
        "Open": 0,
        "Snoozed": 0,
        "Done": 1,
        "All": 1,
        "Unread": 1,
        "Mentions": 0,
        "Opted out": 0,
    }
    assert tab_counts(done, "owner-tabs") == {"Mine": 1, "Unassigned": 0, "All": 1}  # of Done
    assert tab_counts(bob.get("/?view=done&assignee=me").text, "owner-tabs") == {"Mine": 0, "Unassigned": 0, "All": 1}


def test_rows_show_the_owners_initials_with_the_name_for_screen_readers(app, team):
    with app.app_context():
        owners.assign(team["ids"][0], team["bob_id"], None)
    page = team["alice"].get("/?view=all").text
    assert page.count('<span class="owner" title="bob"><span aria-hidden="true">B</span>') == 1
    assert '<span class="visually-hidden">owner: bob</span>' in page


def test_a_shared_poll_of_mine_never_gives_one_person_the_others_list(app, team):
    """`assignee=me` is a different list for each person, however close their polls come."""
    app.config["CLOCK"] = Clock()  # time stands still: a shared rendering would serve both
    alice, bob, (first, second, _third) = team["alice"], team["bob"], team["ids"]
    since = int(re.search(r'hx-get="/\?since=(\d+)', alice.get("/?assignee=me").text).group(1))
    with app.app_context():
        owners.assign(first, team["alice_id"], team["alice_id"])
        owners.assign(second, team["bob_id"], team["bob_id"])
    polls = {
        name: client.get(f"/?since={since}&assignee=me", headers=HTMX).text
        for name, client in (("alice", alice), ("bob", bob))
    }
    assert listed(polls["alice"]) == [first] and listed(polls["bob"]) == [second]
    # The list everyone sees is shared; the Mine count beside it is each person's own.
    shared = {
        name: client.get(f"/?since={since}", headers=HTMX).text for name, client in (("alice", alice), ("bob", bob))
    }
    assert listed(shared["alice"]) == listed(shared["bob"])
    assert tab_counts(shared["alice"], "owner-tabs")["Mine"] == tab_counts(shared["bob"], "owner-tabs")["Mine"] == 1
    with app.app_context():
        owners.assign(third := team["ids"][2], team["alice_id"], team["alice_id"])
    latest = int(re.search(r'hx-get="/\?since=(\d+)', shared["alice"]).group(1))
    mine = {
        name: client.get(f"/?since={latest}", headers=HTMX).text for name, client in (("alice", alice), ("bob", bob))
    }
    assert tab_counts(mine["alice"], "owner-tabs")["Mine"] == 2 and tab_counts(mine["bob"], "owner-tabs")["Mine"] == 1
    assert third in listed(mine["alice"])


def test_a_thread_poll_swaps_the_owner_only_when_it_changed(app, team):
    bob, first = team["bob"], team["ids"][0]
    page = bob.get(f"/conversations/{first}").text
    poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    showing = dict(re.findall(r'<input type="hidden" name="(showing_\w+)" value="([^"]*)" data-showing>', page))
    with app.app_context():
        owners.assign(first, team["alice_id"], team["alice_id"])
    update = bob.get(poll + "&" + urlencode(showing), headers=HTMX).text
    assert 'id="owner"' in update and 'id="assign-to" class="assign-to" hx-swap-oob="true"' in update
    assert "Owner: alice" in update
    showing["showing_owner"] = str(team["alice_id"])
    with app.app_context():
        from app import contacts

        contacts.set_status(first, "done")
    update = bob.get(poll + "&" + urlencode(showing), headers=HTMX).text
    assert 'id="owner"' not in update and 'id="status"' in update


def queue(app, conversation_id: int, author_id: int, key: str) -> None:
    with app.app_context():
        app.config.update(MESSENTE_API_USERNAME="u", MESSENTE_API_PASSWORD="p")
        replies.queue_reply(db.session.get(Conversation, conversation_id), "Tere!", "sms", None, author_id, key)


def test_replying_to_an_unassigned_conversation_makes_the_replier_its_owner(app, team):
    first, second = team["ids"][:2]
    queue(app, first, team["bob_id"], "a" * 16)
    assert owner_of(app, first) == team["bob_id"]
    assert events(app, "assigned") == [
        ("bob", {"conversation": first, "assignee": "bob", "by": "bob", "reason": "replied"})
    ]
    queue(app, first, team["alice_id"], "b" * 16)  # someone else's stays theirs
    assert owner_of(app, first) == team["bob_id"] and len(events(app, "assigned")) == 1

    # The admin turns it off (the setting is admin-only): replies then leave the owner alone.
    alice = team["alice"]
    assert 'name="on" value="1" checked' in alice.get("/admin/users").text
    token = csrf_token(alice.get("/admin/users").text)
    bob_token = csrf_token(team["bob"].get("/").text)
    assert team["bob"].post("/admin/reply-ownership", data={"csrf_token": bob_token}).status_code == 403
    assert alice.post("/admin/reply-ownership", data={"csrf_token": token}).status_code == 303
    assert 'name="on" value="1" checked' not in alice.get("/admin/users").text
    queue(app, second, team["alice_id"], "c" * 16)
    assert owner_of(app, second) is None
    assert events(app, "settings_changed")[-1] == ("alice", {"reply_takes_ownership": "no"})


def test_a_refused_reply_takes_no_ownership(app, team):
    first = team["ids"][0]
    with app.app_context():
        from app.contacts import optouts

        optouts.set_opted_out(first, True, team["alice_id"])
    with pytest.raises(replies.ReplyRefused):
        queue(app, first, team["bob_id"], "d" * 16)
    assert owner_of(app, first) is None and events(app, "assigned") == []


def shift_form(client) -> dict:
    html = client.get("/").text
    form = re.search(r'<form method="post" action="/account/shift" class="shift">.*?</form>', html, re.S).group(0)
    return {
        "html": form,
        "csrf_token": csrf_token(form),
        **dict(re.findall(r'name="(next|on_shift)" value="([^"]*)"', form)),
    }


def test_on_shift_and_off_returning_ones_open_conversations_to_unassigned(app, team):
    bob, (first, second, third) = team["bob"], team["ids"]
    form = shift_form(bob)
    assert form["on_shift"] == "1" and 'aria-checked="false"' in form["html"]
    assert bob.post("/account/shift", data=form).status_code == 303
    with app.app_context():
        assert db.session.get(User, team["bob_id"]).on_shift
        owners.assign(first, team["bob_id"], team["bob_id"])
        owners.assign(second, team["bob_id"], team["bob_id"])
        owners.assign(third, team["alice_id"], team["alice_id"])
        from app import contacts

        contacts.set_status(second, "done")
    form = shift_form(bob)
    assert form["on_shift"] == "0" and 'aria-checked="true"' in form["html"]
    assert "Return my 1 open conversation to Unassigned" in form["html"]  # the done one stays

    response = bob.post("/account/shift", data={**form, "release": "1", "next": "/?view=done"})
    assert response.status_code == 303 and response.headers["Location"] == "/?view=done"
    with app.app_context():
        assert not db.session.get(User, team["bob_id"]).on_shift
    assert [owner_of(app, each) for each in (first, second, third)] == [None, team["bob_id"], team["alice_id"]]
    assert events(app, "on_shift") == [("bob", {"user": "bob"})] and events(app, "off_shift") == [
        ("bob", {"user": "bob"})
    ]
    assert events(app, "unassigned") == [
        ("bob", {"conversation": first, "was": "bob", "by": "bob", "reason": "off shift"})
    ]
    # Off shift without the box ticked keeps what one owns.
    assert bob.post("/account/shift", data={**shift_form(bob)}).status_code == 303
    with app.app_context():
        owners.assign(first, team["bob_id"], team["bob_id"])
    assert bob.post("/account/shift", data={**shift_form(bob)}).status_code == 303
    assert owner_of(app, first) == team["bob_id"]
    assert (
        bob.post("/account/shift", data={**shift_form(bob), "next": "https://evil.example/"}).headers["Location"] == "/"
    )


def test_the_export_names_each_conversations_owner_and_filters_by_owner(app, team):
    alice, first, second = team["alice"], *team["ids"][:2]
    with app.app_context():
        owners.assign(first, team["bob_id"], team["alice_id"])
        owners.assign(second, team["alice_id"], team["alice_id"])
    rows = list(csv_rows(alice.get("/export.csv").data))
    header, body = rows[0], rows[1:]
    by_sender = {row[header.index("sender")]: row[header.index("assignee")] for row in body}
    assert by_sender == {"+3725550001": "bob", "+3725550002": "alice", "+3725550003": ""}
    mine = list(csv_rows(alice.get("/export.csv?assignee=me").data))[1:]
    assert [row[header.index("sender")] for row in mine] == ["+3725550002"]
    assert "assignee=me" in alice.get("/?assignee=me").text.split('id="export"', 1)[1].split(">", 1)[0]


def csv_rows(data: bytes):
    import csv
    import io

    return csv.reader(io.StringIO(data.decode("utf-8-sig")))

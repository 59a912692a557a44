"""In-app notifications: made once per event (a conversation assigned by someone else, a new
message in one a person owns, one unread per conversation), the kinds a person chose, the bell in
the page and in each person's polls (never in the list rendering polls share), marking read."""

import re
from html import unescape

import pytest
import sqlalchemy as sa

from app import notifications
from app.callbacks import ingest
from app.contacts import owners
from app.db.models import Notification, User
from app.extensions import db
from browser_helpers import LIVE, RECORD_NOTIFICATIONS, log_in, set_tab_hidden
from browser_helpers import deliver as deliver_to
from conftest import add_user, body_for, conversation_of, csrf_token

HTMX = {"HX-Request": "true"}
BELL = re.compile(r'<span id="bell"[^>]*>')


@pytest.fixture
def team(app, client, admin, agent, deliver):
    """alice (admin) and bob (agent), both logged in, and two customers, unassigned."""
    for sender in ("+3725550001", "+3725550002"):
        deliver(body_for(sender=sender, text=f"from {sender}"))
    with app.app_context():
        people = dict(db.session.execute(sa.select(User.username, User.id)).all())
        ids = [conversation_of(sender).id for sender in ("+3725550001", "+3725550002")]
    return {
        "alice": client,
        "bob": agent.client,
        "ids": ids,
        "deliver": deliver,
        **{f"{name}_id": id_ for name, id_ in people.items()},
    }


def rows(app, user_id: int | None = None) -> list[tuple[int, str, int, bool]]:
    """(user, kind, conversation, unread) of every notification, oldest first."""
    with app.app_context():
        query = sa.select(
            Notification.user_id, Notification.kind, Notification.conversation_id, Notification.read_at.is_(None)
        ).order_by(Notification.id)
        if user_id is not None:
            query = query.where(Notification.user_id == user_id)
        return [tuple(row) for row in db.session.execute(query)]


def bell_name(html: str) -> str:
    """What a screen reader hears for the bell."""
    link = re.search(r'<span id="bell".*?<a [^>]*>(.*?)</a>', html, re.S).group(1)
    link = re.sub(r'<(svg|span)[^>]*aria-hidden="true"[^>]*>.*?</\1>', "", link, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", unescape(link)).split())


def bell_count(html: str) -> int | None:
    found = re.search(r'id="showing-bell" name="showing_bell" value="(\d+)"', html)
    return int(found.group(1)) if found else None


def list_since(html: str) -> int:
    return int(re.search(r'hx-get="/\?since=(\d+)', html).group(1))


def assign(app, conversation_id: int, to: int | None, by: int | None) -> None:
    with app.app_context():
        owners.assign(conversation_id, to, by)


def test_assignment_by_someone_else_notifies_once_and_self_assignment_not(app, team):
    first, second = team["ids"]
    assign(app, first, team["bob_id"], team["alice_id"])
    assign(app, first, team["bob_id"], team["alice_id"])  # so already: no event, no notification
    assign(app, second, team["bob_id"], team["bob_id"])  # bob took it himself
    assign(app, second, team["alice_id"], None)  # auto-assignment: someone other than alice
    assert rows(app) == [(team["bob_id"], "assigned", first, True), (team["alice_id"], "assigned", second, True)]


def test_assigning_with_the_form_notifies_the_teammate_not_the_one_who_assigned(app, team):
    bob, first = team["bob"], team["ids"][0]
    page = bob.get(f"/conversations/{first}").text
    action = re.search(r'<div id="assign-to".*?<form method="post" action="([^"]+)"', page, re.S).group(1)
    bob.post(unescape(action), data={"assignee": str(team["alice_id"]), "csrf_token": csrf_token(page)})
    bob.post(unescape(action), data={"assignee": "me", "csrf_token": csrf_token(page)})
    assert rows(app) == [(team["alice_id"], "assigned", first, True)]


def test_a_new_message_in_an_owned_conversation_notifies_its_owner_once_while_unread(app, team):
    first, second = team["ids"]
    deliver = team["deliver"]
    assign(app, first, team["bob_id"], team["bob_id"])
    deliver(body_for(sender="+3725550001", text="one"))
    deliver(body_for(sender="+3725550001", text="two"))  # joins the unread one
    deliver(body_for(sender="+3725550002", text="unowned"))  # nobody owns it: nobody is told
    assert rows(app) == [(team["bob_id"], "message", first, True)]

    team["bob"].get(f"/conversations/{first}")  # opened: read
    deliver(body_for(sender="+3725550001", text="three"))
    assert rows(app) == [(team["bob_id"], "message", first, False), (team["bob_id"], "message", first, True)]
    assert second not in [conversation for _, _, conversation, _ in rows(app)]


def test_one_batch_of_many_messages_makes_one_notification_per_owned_conversation(app, team):
    first, second = team["ids"]
    assign(app, first, team["bob_id"], team["bob_id"])
    assign(app, second, team["alice_id"], team["alice_id"])
    batch = [
        ingest.parse_payload(body_for(sender=sender, text=str(n)))
        for n in range(3)
        for sender in ("+3725550001", "+3725550002", "+3725550099")
    ]
    with app.app_context():
        assert all(ingest.store_messages(batch))
    assert sorted(rows(app)) == sorted(
        [(team["bob_id"], "message", first, True), (team["alice_id"], "message", second, True)]
    )


def test_a_person_who_turned_a_kind_off_gets_none_of_it(app, team):
    first, second = team["ids"]
    bob = team["bob"]
    page = bob.get("/account").text
    kinds = len(notifications.KINDS)  # assigned, message, and a scheduled message's held and missed
    assert page.count('name="kind"') == kinds and page.count(" checked") == kinds  # all on by default
    answer = bob.post("/account/notifications", data={"kind": "assigned", "csrf_token": csrf_token(page)})
    assert answer.status_code == 200
    assert 'value="assigned" checked' in answer.text and 'value="message">' in answer.text
    with app.app_context():
        assert notifications.kinds_on(team["bob_id"]) == {
            "assigned": True,
            "message": False,
            "mention": False,
            "woke": False,
            "held": False,
            "missed": False,
        }

    assign(app, first, team["bob_id"], team["alice_id"])  # still wanted
    team["alice"].get("/")
    bob.get(f"/conversations/{first}")
    team["deliver"](body_for(sender="+3725550001", text="not for the bell"))
    assert rows(app) == [(team["bob_id"], "assigned", first, False)]

    bob.post("/account/notifications", data={"csrf_token": csrf_token(page)})  # neither
    assign(app, second, team["bob_id"], team["alice_id"])
    assert len(rows(app)) == 1


def test_the_bell_counts_each_persons_own_unread_in_the_page(app, team):
    first, second = team["ids"]
    assign(app, first, team["bob_id"], team["alice_id"])
    assign(app, second, team["bob_id"], team["alice_id"])
    assert bell_name(team["bob"].get("/").text) == "Notifications, 2 unread"
    assert bell_name(team["alice"].get("/").text) == "Notifications, none unread"
    assert bell_count(team["alice"].get("/account").text) == 0  # every page has it


def test_polls_carry_each_persons_bell_after_the_shared_list_and_only_when_it_changed(app, team):
    alice, bob, first = team["alice"], team["bob"], team["ids"][0]
    since = list_since(alice.get("/").text)
    assert list_since(bob.get("/").text) == since
    assign(app, first, team["bob_id"], team["alice_id"])  # a change every list sees; bob's bell moves

    polled = {
        name: client.get(f"/?since={since}&showing_bell=0", headers=HTMX).text
        for name, client in (("alice", alice), ("bob", bob))
    }
    assert bell_count(polled["alice"]) is None  # her count is as her page shows: no bell
    assert bell_name(polled["bob"]) == "Notifications, 1 unread"
    assert 'hx-swap-oob="true"' in BELL.search(polled["bob"]).group(0)
    # The list itself is one rendering for both, and the bell comes after it.
    shared = polled["alice"][polled["alice"].index('<section id="conversations"') :]
    assert polled["bob"].index(shared) < polled["bob"].index('<span id="bell"')
    assert 'id="bell"' not in shared and "showing_bell" not in shared

    again = bob.get(f"/?since={since}&showing_bell=1", headers=HTMX).text  # his page shows it now
    assert bell_count(again) is None
    latest = list_since(polled["bob"])
    assert bob.get(f"/?since={latest}&showing_bell=0", headers=HTMX).status_code == 204  # nothing new


def test_the_thread_poll_carries_the_bell_when_it_changed(app, team):
    alice, first, second = team["alice"], *team["ids"]
    page = alice.get(f"/conversations/{second}").text
    poll = unescape(re.search(r'<div id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    assert bell_count(page) == 0
    assign(app, second, team["alice_id"], team["bob_id"])
    update = alice.get(poll + "&showing_bell=0", headers=HTMX)
    assert update.status_code == 200 and bell_name(update.text) == "Notifications, 1 unread"
    assert bell_count(alice.get(poll + "&showing_bell=1", headers=HTMX).text) is None
    assert first != second


def test_opening_the_thread_marks_its_notifications_read_for_that_person(app, team):
    first, second = team["ids"]
    assign(app, first, team["bob_id"], team["alice_id"])
    assign(app, second, team["bob_id"], team["alice_id"])
    assign(app, first, team["alice_id"], team["bob_id"])
    team["bob"].get(f"/conversations/{first}")
    assert rows(app, team["bob_id"]) == [
        (team["bob_id"], "assigned", first, False),
        (team["bob_id"], "assigned", second, True),
    ]
    assert rows(app, team["alice_id"]) == [(team["alice_id"], "assigned", first, True)]  # hers stay unread

    pane = team["bob"].get(f"/conversations/{second}", headers={**HTMX, "HX-Target": "conversation-pane"}).text
    assert bell_name(pane) == "Notifications, none unread"  # the pane brings the bell along


def test_reading_a_conversation_reads_its_notifications(app, team):
    alice, first = team["alice"], team["ids"][0]
    assign(app, first, team["alice_id"], team["alice_id"])
    page = alice.get(f"/conversations/{first}").text
    team["deliver"](body_for(sender="+3725550001", text="while it is open"))
    assert rows(app) == [(team["alice_id"], "message", first, True)]
    with app.app_context():
        newest = conversation_of("+3725550001").last_message_id
    answer = alice.post(
        f"/conversations/{first}/read", data={"through": newest, "csrf_token": csrf_token(page)}, headers=HTMX
    )
    assert bell_name(answer.text) == "Notifications, none unread"
    assert rows(app) == [(team["alice_id"], "message", first, False)]


def test_the_notifications_page_lists_newest_first_and_marks_read(app, team):
    bob, first, second = team["bob"], *team["ids"]
    with app.app_context():
        from app import contacts

        contacts.set_contact(second, "Ülle Tamm", "")
    assign(app, first, team["bob_id"], team["alice_id"])
    assign(app, second, team["bob_id"], None)
    page = bob.get("/notifications").text
    items = re.findall(r'<li class="notification unread">.*?</li>', page, re.S)
    assert len(items) == 2
    assert "Ülle Tamm" in items[0] and f'href="/conversations/{second}"' in items[0]
    assert "<bdi>+372 5550 001</bdi>" in items[1]  # a number as people read it
    assert "Assigned to you" in items[0] and "<time datetime=" in items[0]
    assert bell_name(page) == "Notifications, 2 unread"

    [mark_second] = re.findall(r'action="(/notifications/\d+/read)"', items[0])
    answer = bob.post(mark_second, data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/notifications")
    page = bob.get("/notifications").text
    assert bell_name(page) == "Notifications, 1 unread"
    assert page.count('class="notification unread"') == 1

    answer = bob.post("/notifications/read", data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 303
    page = bob.get("/notifications").text
    assert bell_name(page) == "Notifications, none unread" and "Mark all read" not in page
    assert page.count('class="notification"') == 2


def test_another_persons_notification_is_not_marked_by_its_id(app, team):
    assign(app, team["ids"][0], team["bob_id"], team["alice_id"])
    with app.app_context():
        [notification_id] = db.session.scalars(sa.select(Notification.id))
    page = team["alice"].get("/notifications").text
    team["alice"].post(f"/notifications/{notification_id}/read", data={"csrf_token": csrf_token(page)})
    assert rows(app) == [(team["bob_id"], "assigned", team["ids"][0], True)]


def test_an_erased_conversation_takes_its_notifications_along(app, team):
    from app.privacy import erasure

    first, second = team["ids"]
    assign(app, first, team["bob_id"], team["alice_id"])
    assign(app, second, team["bob_id"], team["alice_id"])
    with app.app_context():
        erasure.erase_conversation(first)
    assert rows(app) == [(team["bob_id"], "assigned", second, True)]
    assert team["bob"].get("/notifications").status_code == 200


@pytest.mark.browser
def test_a_hidden_tab_shows_a_new_notification_on_the_bell_and_the_desktop(app, new_context, server):
    """The list's slow poll brings the person's bell; its rise is a desktop notification that says
    what happened, once (the live region's "new message" is the same notification, replaced)."""
    from playwright.sync_api import expect

    deliver_to(server, sender="+37255512345", text="first")
    with app.app_context():
        add_user("bob", role="agent")
        alice, bob = (db.session.scalar(sa.select(User.id).where(User.username == name)) for name in ("alice", "bob"))
        conversation_id = conversation_of("+37255512345").id
    context = new_context(permissions=["notifications"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    page.clock.install()
    log_in(page, server)
    page.get_by_role("button", name="Desktop alerts", exact=True).click()  # desktop notifications on
    expect(page.get_by_role("link", name="Notifications, none unread")).to_be_visible()

    set_tab_hidden(page, True)
    with app.app_context():
        owners.assign(conversation_id, alice, bob)
    page.clock.run_for(31_000)  # a hidden tab's slow interval
    expect(page.get_by_role("link", name="Notifications, 1 unread")).to_be_visible(timeout=LIVE)
    assert page.evaluate("window.__notifications") == ["Assigned to you: +372 5551 2345"]

"""Private notes and @mentions (app/replies/notes.py): stored for the team, never sent; a mention
notifies once and keeps the conversation in the person's Mentions view until they read it."""

import csv
import io
import re

import sqlalchemy as sa

from app import clock, notifications
from app.db.models import AuditEvent, Conversation, Job, Mention, Message, Notification, User
from app.extensions import db
from app.inbox import search
from app.privacy import erasure, purge
from app.replies import notes
from conftest import AuthActions, add_user, conversation_of
from helpers import CUSTOMER, Clock, deliver, reply_form, send_reply, thread_path, user_id, wait_for_status

HTMX = {"HX-Request": "true"}


def note_form(page: str) -> dict:
    """The box's hidden fields and where it posts, in Note mode."""
    return {**reply_form(page), "mode": "note"} if '/replies"' in page else {**notes_only_form(page)}


def notes_only_form(page: str) -> dict:
    form = re.search(r'<form method="post" action="([^"]+/notes)".*?</form>', page, re.S)
    assert form, "no note box on the page"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))
    return {"action": form.group(1), **fields}


def write_note(client, app, text: str, form: dict | None = None, htmx: bool = True):
    form = dict(form or note_form(client.get(thread_path(app)).text))
    action = form.pop("action")
    return client.post(action, data={**form, "text": text}, headers=HTMX if htmx else {})


def notes_in(app) -> list[Message]:
    with app.app_context():
        found = db.session.scalars(sa.select(Message).where(Message.direction == "note").order_by(Message.id)).all()
        db.session.expunge_all()
        return found


def log_in(app, name: str):
    client = app.test_client()
    assert AuthActions(client).login(name).status_code == 302
    return client


def team(app) -> None:
    """bob and carol (agents) and dave, whose account is disabled."""
    with app.app_context():
        add_user("bob", role="agent")
        add_user("carol", role="agent")
        add_user("dave", role="agent")
        db.session.execute(sa.update(User).where(User.username == "dave").values(disabled=True))
        db.session.commit()


def notifications_of(app, name: str) -> list[tuple[str, bool]]:
    with app.app_context():
        return [
            (kind, read_at is None)
            for kind, read_at in db.session.execute(
                sa.select(Notification.kind, Notification.read_at)
                .where(Notification.user_id == user_id(app, name))
                .order_by(Notification.id)
            )
        ]


def test_a_note_is_stored_for_the_team_and_never_reaches_messente(reply_app, person, messente):
    deliver(reply_app, text="Kas mu pakk on teel?")
    path = thread_path(reply_app)
    with reply_app.app_context():
        before = conversation_of(CUSTOMER)
        db.session.expunge(before)
    form = note_form(person.get(path).text)
    for _ in range(3):  # a double click, then the same form again (its one-time key)
        response = write_note(person, reply_app, "Checked the courier: it leaves tomorrow.", form)
        assert response.status_code == 200 and response.headers["HX-Trigger"] == "poll-now"
    assert 'id="composer-mode-note" name="mode" value="note" checked' in response.text  # the box stays in Note mode
    [note] = notes_in(reply_app)
    assert (note.direction, note.channel, note.status, note.legs, note.msg_id) == (
        "note",
        "note",
        None,
        None,
        f"note-{form['key']}",
    )
    assert note.author_id == user_id(reply_app, "alice") and note.recipient is None
    with reply_app.app_context():
        after = conversation_of(CUSTOMER)
        # The list's row stays the customer's conversation: preview, order, unread count.
        assert (after.last_text, after.last_direction, after.last_message_id, after.unread_count) == (
            before.last_text,
            "in",
            before.last_message_id,
            1,
        )
        assert after.message_count == before.message_count + 1 and after.change_seq > before.change_seq
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "send_reply")) == 0
        [event] = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "note")).all()
        assert event.username == "alice" and f'"note": {note.id}' in event.details

    # A retry of the note (as if it were a failed reply) changes nothing and sends nothing.
    token = reply_form(person.get(path).text)["csrf_token"]
    assert person.post(f"{path}/replies/{note.id}/retry", data={"csrf_token": token}).status_code == 303
    # The thread shows it in its own style, with its author and time.
    page = person.get(path).text
    assert f'id="message-{note.id}" class="message note"' in page and "Only your team sees this" in page
    assert "Checked the courier: it leaves tomorrow." in page

    # A reply sent after it is the only thing Messente ever gets: the job runner has run since.
    send_reply(person, reply_app, "Homme on kohal!")
    wait_for_status(reply_app, "sent")
    [request] = messente.wait_for_requests(1)
    assert request.json["messages"][0]["text"] == "Homme on kohal!"
    assert len(messente.requests) == 1
    assert [n.status for n in notes_in(reply_app)] == [None]


def test_a_plain_form_note_returns_to_the_thread_and_an_empty_one_is_refused(reply_app, person):
    deliver(reply_app)
    path = thread_path(reply_app)
    response = write_note(person, reply_app, "Without JavaScript", htmx=False)
    assert response.status_code == 303 and response.headers["Location"] == path
    refused = write_note(person, reply_app, "   ", htmx=False)
    assert refused.status_code == 400 and "Type a note first." in refused.text
    assert 'id="composer-mode-note" name="mode" value="note" checked' in refused.text
    refused = write_note(person, reply_app, "x" * (notes.MAX_TEXT + 1))
    assert refused.status_code == 200 and "A note can be at most" in refused.text
    assert [n.text for n in notes_in(reply_app)] == ["Without JavaScript"]


def test_a_conversation_that_cannot_be_answered_takes_notes(app, admin):
    """No Messente API key here: the box writes notes only, and says why nothing can be sent."""
    deliver(app, text="Hello")
    page = admin.client.get(thread_path(app)).text
    assert '/replies"' not in page and "Replies need Messente API credentials" in page
    assert 'id="composer-mode-reply" name="mode" value="reply" disabled' in page
    response = write_note(admin.client, app, "Ask the admin for the API key", notes_only_form(page))
    assert response.status_code == 200
    assert [n.text for n in notes_in(app)] == ["Ask the admin for the API key"]


def test_a_teammates_note_does_not_hold_a_reply(reply_app, person):
    """The send guard holds a reply for the customer's messages and teammates' replies, not notes."""
    team(reply_app)
    deliver(reply_app)
    path = thread_path(reply_app)
    form = reply_form(person.get(path).text)  # what alice had on screen
    write_note(log_in(reply_app, "bob"), reply_app, "I'll call them after lunch")
    action = form.pop("action")
    response = person.post(action, data={**form, "text": "Tere!"}, headers=HTMX)
    assert response.status_code == 200 and "New since you started writing" not in response.text
    wait_for_status(reply_app, "sent")


def test_mentions_notify_once_and_only_active_teammates(app, admin):
    team(app)
    deliver(app)
    text = "@bob and @Bob again; @alice is me, @dave is disabled, bob@example.com is an address, @carol."
    form = note_form(admin.client.get(thread_path(app)).text)
    for _ in range(2):  # a double submit
        assert write_note(admin.client, app, text, form).status_code == 200
    with app.app_context():
        mentioned = db.session.execute(
            sa.select(User.username).join(Mention, Mention.user_id == User.id).order_by(User.username)
        ).scalars()
        assert list(mentioned) == ["bob", "carol"]
        [event] = db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "note")).all()
        assert '"mentioned": ["bob", "carol"]' in event
    assert notifications_of(app, "bob") == [("mention", True)]
    assert notifications_of(app, "carol") == [("mention", True)]
    assert notifications_of(app, "alice") == [] and notifications_of(app, "dave") == []

    # Another note naming bob while his notification is unread joins it; the mention is its own.
    assert write_note(admin.client, app, "@bob see above").status_code == 200
    assert notifications_of(app, "bob") == [("mention", True)]
    with app.app_context():
        assert notifications.newest_unread(user_id(app, "bob")).label == "Mentioned you"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Mention)) == 3


def test_mentioned_in_takes_the_longest_name_and_needs_a_boundary(app):
    with app.app_context():
        for name in ("ann", "ann lee", "mari.tamm"):
            add_user(name, role="agent")
        names = lambda text: [person.username for person in notes.mentioned_in(text)]  # noqa: E731
        assert names("@ann lee, please") == ["ann lee"]
        assert names("@ann, please") == ["ann"]
        assert names("@annika") == [] and names("x@ann") == []
        assert names("(@MARI.TAMM)") == ["mari.tamm"]
        assert names("@ann and @ann lee") == ["ann", "ann lee"]


def test_the_mentions_view_lists_unread_mentions_until_the_person_reads_them(app, admin):
    team(app)
    deliver(app, sender="+37255500001", text="first customer")
    deliver(app, sender=CUSTOMER, text="second customer")
    write_note(admin.client, app, "@bob can you take this one?")
    bob = log_in(app, "bob")
    mentions = bob.get("/?view=mentions").text
    assert re.search(r'aria-current="page">Mentions <span class="count">1</span>', mentions)
    with app.app_context():
        conversation_id = conversation_of(CUSTOMER).id
        other_id = conversation_of("+37255500001").id
    assert f'id="conversation-link-{conversation_id}"' in mentions
    assert f'id="conversation-link-{other_id}"' not in mentions
    # Someone else's Mentions view is their own: alice has none.
    assert 'Mentions <span class="count">0</span>' in admin.client.get("/").text
    assert "No unread mentions of you." in admin.client.get("/?view=mentions").text
    # It combines with the owner filter like the other views.
    assert f'id="conversation-link-{conversation_id}"' not in bob.get("/?view=mentions&assignee=me").text

    # A list poll brings bob his own count, and never alice's (polls share the list, not the tabs).
    with app.app_context():
        since = db.session.scalar(sa.select(sa.func.max(Conversation.change_seq))) - 1
    poll = bob.get(f"/?since={since}", headers=HTMX).text
    assert 'Mentions <span class="count">1</span>' in poll
    poll = admin.client.get(f"/?since={since}", headers=HTMX).text
    assert 'Mentions <span class="count">0</span>' in poll

    assert bob.get(f"/conversations/{conversation_id}").status_code == 200  # bob reads it
    assert notifications_of(app, "bob") == [("mention", False)]
    mentions = bob.get("/?view=mentions").text
    assert f'id="conversation-link-{conversation_id}"' not in mentions and "No unread mentions of you." in mentions
    assert 'Mentions <span class="count">0</span>' in mentions
    with app.app_context():
        assert db.session.scalar(sa.select(Conversation.unread_count).where(Conversation.id == conversation_id)) == 1


def test_search_finds_a_note_and_export_shows_it_with_its_author(app, admin):
    deliver(app, text="Tere")
    write_note(admin.client, app, "Mustikamoos on otsas, paku vaarikat")
    with app.app_context():
        [hit], _ = search.search_messages("mustikamoos")
        assert (hit.direction, hit.text) == ("note", "Mustikamoos on otsas, paku vaarikat")
    found = admin.client.get("/?q=mustikamoos").text
    assert '<span class="you">Note:</span>' in found

    with admin.client.get("/export.csv") as response:
        rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    [row] = [row for row in rows if row["direction"] == "note"]
    assert (row["agent"], row["status"], row["channel"], row["text"]) == (
        "alice",
        "",
        "note",
        "Mustikamoos on otsas, paku vaarikat",
    )


def test_erasure_removes_notes_and_mentions(app, admin):
    team(app)
    deliver(app, text="Please forget me")
    write_note(admin.client, app, "@bob erase this one")
    with app.app_context():
        conversation_id = conversation_of(CUSTOMER).id
        assert erasure.erase_conversation(conversation_id) == 2
        for model in (Message, Mention, Notification):
            assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0, model


def test_a_person_who_turned_mentions_off_still_has_the_mention_in_their_view(app, admin):
    team(app)
    deliver(app)
    with app.app_context():
        notifications.set_kinds_on(user_id(app, "carol"), {"assigned", "message"})
    write_note(admin.client, app, "@carol FYI")
    assert notifications_of(app, "carol") == []
    with app.app_context():
        conversation_id = conversation_of(CUSTOMER).id
    assert f'id="conversation-link-{conversation_id}"' in log_in(app, "carol").get("/?view=mentions").text


def test_the_purge_takes_old_notes_and_a_conversation_left_with_notes_alone(app, user):
    """Retention: a note goes when it is old like any message, its mentions with it; a conversation
    whose messages all went but a newer note goes whole (its list row would point at nothing)."""
    app.config["CLOCK"] = Clock()
    team(app)
    deliver(app, sender="+37255500001", text="old customer")  # day 0
    deliver(app, sender=CUSTOMER, text="old customer too")
    with app.app_context():
        bob = user_id(app, "bob")
        keeps, goes = conversation_of(CUSTOMER).id, conversation_of("+37255500001").id
        notes.add_note(keeps, "@bob an old note", 1, "k" * 16)
    app.config["CLOCK"].advance(days=10)
    with app.app_context():
        notes.add_note(goes, "@bob a newer note", 1, "n" * 16)
    app.config["CLOCK"].advance(days=30)
    deliver(app, sender=CUSTOMER, text="this month")
    with app.app_context():
        result = purge.purge(clock.now(), days=30, audit_days=365)
        assert (result.messages, result.conversations_removed) == (3, 1)
        assert conversation_of("+37255500001") is None
        assert db.session.scalars(sa.select(Message.text).order_by(Message.id)).all() == ["this month"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Mention)) == 0
        assert db.session.scalars(sa.select(Notification.conversation_id).where(Notification.user_id == bob)).all() == [
            keeps
        ]
        assert conversation_of(CUSTOMER).message_count == 1

"""Saved replies: managed by admins, offered in every reply box with the contact's name filled in."""

import re
from html import unescape

import pytest
import sqlalchemy as sa

from app import contacts
from app.db.models import Conversation, SavedReply
from app.extensions import db
from app.replies import saved_replies
from conftest import add_user, body_for, csrf_token


@pytest.fixture
def replies_possible(app):
    """Reply boxes are offered (the credentials are never used: nothing is sent here)."""
    app.config.update(
        MESSENTE_API_USERNAME="api-user", MESSENTE_API_PASSWORD="api-password", MESSENTE_API_URL="http://127.0.0.1:9"
    )


@pytest.fixture
def admin(client, auth, replies_possible):
    auth.login()  # alice, the first user, is an admin
    return client


def add(client, title: str, text: str):
    token = csrf_token(client.get("/saved-replies").text)
    return client.post("/saved-replies", data={"csrf_token": token, "title": title, "text": text})


def stored(client) -> list[tuple[str, str]]:
    with client.application.app_context():
        return db.session.execute(sa.select(SavedReply.title, SavedReply.text).order_by(SavedReply.id)).all()


def test_an_admin_adds_edits_and_deletes_saved_replies(admin):
    assert "None yet" in admin.get("/saved-replies").text
    response = add(admin, "  Thanks ", "Hi {name}, thanks for writing!\r\nWe reply within a day.")
    assert response.status_code == 303 and response.headers["Location"] == "/saved-replies"
    assert add(admin, "Opening hours", "We are open 9-17.").status_code == 303
    assert stored(admin) == [
        ("Thanks", "Hi {name}, thanks for writing!\nWe reply within a day."),
        ("Opening hours", "We are open 9-17."),
    ]
    page = admin.get("/saved-replies").text
    assert page.index("Opening hours") < page.index("Thanks")  # by title

    with admin.application.app_context():
        hours = db.session.scalar(sa.select(SavedReply.id).where(SavedReply.title == "Opening hours"))
    edit = admin.get(f"/saved-replies?edit={hours}").text
    assert 'value="Opening hours"' in edit and "Save changes" in edit
    token = csrf_token(edit)
    assert (
        admin.post(
            f"/saved-replies/{hours}", data={"csrf_token": token, "title": "Hours", "text": "9-17, Mon-Fri."}
        ).status_code
        == 303
    )
    assert admin.post(f"/saved-replies/{hours}/delete", data={"csrf_token": token}).status_code == 303
    assert [title for title, _ in stored(admin)] == ["Thanks"]


def test_refused_saved_replies_say_why_and_keep_what_was_typed(admin):
    add(admin, "Thanks", "Thank you!")
    duplicate = add(admin, "Thanks", "Another text")
    assert duplicate.status_code == 400
    assert "A saved reply called “Thanks” exists already." in duplicate.text
    assert "Another text</textarea>" in duplicate.text
    empty = add(admin, "   ", "text")
    assert empty.status_code == 400 and "Give the saved reply a title." in empty.text
    too_long = add(admin, "Long", "x" * 1601)
    assert too_long.status_code == 400 and "longer than 1600 characters" in too_long.text
    assert stored(admin) == [("Thanks", "Thank you!")]


def test_saved_replies_need_csrf(admin):
    assert admin.post("/saved-replies", data={"title": "t", "text": "x"}).status_code == 400
    assert stored(admin) == []


def test_agents_use_saved_replies_but_only_admins_manage_them(app, client, auth, deliver, replies_possible):
    with app.app_context():
        add_user("bob", role="agent")
        db.session.add(SavedReply(title="Thanks", text="Thank you!"))
        db.session.commit()
    deliver(body_for(sender="+3725550001"))
    auth.login("bob")
    assert client.get("/saved-replies").status_code == 403
    token = csrf_token(client.get("/").text)
    assert client.post("/saved-replies", data={"csrf_token": token, "title": "t", "text": "x"}).status_code == 403
    assert client.post("/saved-replies/1/delete", data={"csrf_token": token}).status_code == 403
    assert 'href="/saved-replies"' not in client.get("/").text
    with app.app_context():
        conversation_id = db.session.scalar(sa.select(Conversation.id))
    assert 'data-saved-text="Thank you!"' in client.get(f"/conversations/{conversation_id}").text


def test_the_reply_box_offers_them_with_the_contact_name_filled_in(app, admin, deliver):
    add(admin, "Thanks", "Hi {name}, thanks for writing!")
    deliver(body_for(sender="+3725550001"))
    with app.app_context():
        conversation_id = db.session.scalar(sa.select(Conversation.id))
    path = f"/conversations/{conversation_id}"
    assert 'data-saved-text="Hi, thanks for writing!"' in admin.get(path).text  # no name yet: left out
    with app.app_context():
        contacts.set_contact(conversation_id, "Ülle", "")
    page = admin.get(path).text
    assert 'data-saved-text="Hi Ülle, thanks for writing!"' in page and 'data-saved-title="Thanks"' in page

    # Without JavaScript the menu's link opens the reply box with the text in it.
    link = unescape(re.search(r'<a href="([^"]+saved_reply=\d+)"', page).group(1))
    assert re.search(r'<textarea id="reply-text"[^>]*>Hi Ülle, thanks for writing!</textarea>', admin.get(link).text)


def test_a_conversation_that_cannot_be_replied_to_offers_none(app, admin, deliver):
    add(admin, "Thanks", "Thank you!")
    deliver(body_for(sender="MyShop"))
    with app.app_context():
        conversation_id = db.session.scalar(sa.select(Conversation.id))
    assert "data-saved-text" not in admin.get(f"/conversations/{conversation_id}").text


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("Hi {name}, thanks!", "Ülle", "Hi Ülle, thanks!"),
        ("Hi {name}, thanks!", None, "Hi, thanks!"),
        ("{name}, your parcel is here.", None, "your parcel is here."),
        ("Dear {name}", "<b>", "Dear <b>"),  # escaped where shown, like any text
        ("No placeholder", None, "No placeholder"),
    ],
)
def test_name_placeholder(text, name, expected):
    assert saved_replies.filled(text, Conversation(sender="+3725550001", contact_name=name)) == expected

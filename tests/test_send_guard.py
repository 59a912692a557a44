"""The send guard ("nobody answers twice"): a reply carries the newest message its writer had on
screen, and is held, not queued, when the customer wrote again or a teammate answered meanwhile.
Both databases; the reply box as htmx gets it and as a plain form does."""

import threading

import pytest
import sqlalchemy as sa

from app.db.models import Job
from app.extensions import db
from conftest import AuthActions, add_user, conversation_of
from helpers import CUSTOMER, deliver, replies_in, reply_form, thread_path, wait_for_status

HTMX = {"HX-Request": "true"}


@pytest.fixture
def bob(reply_app):
    """bob, an agent, logged in on his own client beside alice (`person`)."""
    with reply_app.app_context():
        add_user("bob", role="agent")
    client = reply_app.test_client()
    assert AuthActions(client).login("bob").status_code == 302
    return client


def open_form(client, app) -> dict:
    """The reply box as the thread page draws it, its action apart."""
    return reply_form(client.get(thread_path(app)).text)


def post(client, form: dict, text: str, htmx: bool = True, **fields):
    data = {name: value for name, value in form.items() if name != "action"}
    return client.post(form["action"], data={**data, "text": text, **fields}, headers=HTMX if htmx else {})


def send_jobs(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "send_reply"))


def test_the_box_carries_the_newest_message_on_screen(reply_app, person):
    deliver(reply_app, text="Esimene")
    deliver(reply_app, text="Teine")
    with reply_app.app_context():
        newest = conversation_of(CUSTOMER).last_message_id
    assert open_form(person, reply_app)["seen_message_id"] == str(newest)
    # A page of earlier messages (not the live end of the thread): the newest it shows.
    older = reply_form(person.get(thread_path(reply_app) + f"?around={newest - 1}").text)
    assert int(older["seen_message_id"]) <= newest


def test_a_reply_after_the_customer_wrote_again_is_held_with_what_is_new(reply_app, person, messente):
    deliver(reply_app, text="Kas pood on avatud?")
    form = open_form(person, reply_app)
    deliver(reply_app, text="Ah, leidsin ise, aitäh!")

    response = post(person, form, "Jah, kella 18-ni.")
    assert response.status_code == 200
    held = response.text
    assert "New since you started writing" in held and "Ah, leidsin ise, aitäh!" in held
    assert "Kas pood on avatud?" not in held  # only what came after the newest on screen
    assert ">Jah, kella 18-ni.</textarea>" in held  # the text is kept
    assert "Send anyway" in held and "<time datetime=" in held
    assert response.headers["HX-Trigger"] == "poll-now"  # the thread brings the new message too
    assert replies_in(reply_app) == [] and send_jobs(reply_app) == 0 and messente.requests == []


def test_without_javascript_the_thread_page_comes_back_with_the_held_box(reply_app, person):
    deliver(reply_app, text="Tere!")
    form = open_form(person, reply_app)
    deliver(reply_app, text="Vabandust, veel üks küsimus")
    response = post(person, form, "Tere, kuidas saan aidata?", htmx=False)
    assert response.status_code == 409
    page = response.text
    assert 'id="messages"' in page  # the whole thread page
    assert "New since you started writing" in page and "Vabandust, veel üks küsimus" in page
    assert ">Tere, kuidas saan aidata?</textarea>" in page and "Send anyway" in page
    assert replies_in(reply_app) == []

    # Send anyway: the held box says it has seen what is new, and the reply goes.
    again = reply_form(page)
    assert post(person, again, "Tere, kuidas saan aidata?", htmx=False).status_code == 303
    [reply] = wait_for_status(reply_app, "sent")
    assert reply.text == "Tere, kuidas saan aidata?"


def test_a_reply_after_a_teammates_reply_is_held_and_send_anyway_sends(reply_app, person, bob, messente):
    deliver(reply_app, text="Millal pakk jõuab?")
    alices = open_form(person, reply_app)
    bobs = open_form(bob, reply_app)
    assert post(bob, bobs, "Homme hommikul.").status_code == 200
    wait_for_status(reply_app, "sent")

    held = post(person, alices, "Pakk jõuab homme.")
    assert "New since you started writing" in held.text
    assert "bob" in held.text and "Homme hommikul." in held.text
    assert [reply.text for reply in replies_in(reply_app)] == ["Homme hommikul."]

    anyway = reply_form(held.text)  # the box that came back: "Send anyway"
    assert int(anyway["seen_message_id"]) == replies_in(reply_app)[0].id
    assert post(person, anyway, "Pakk jõuab homme.").status_code == 200
    sent = wait_for_status(reply_app, "sent", count=2)
    assert [reply.text for reply in sent] == ["Homme hommikul.", "Pakk jõuab homme."]
    assert send_jobs(reply_app) == 2 and len(messente.requests) == 2


def test_send_anyway_is_held_again_when_yet_another_message_came(reply_app, person):
    deliver(reply_app, text="Üks")
    form = open_form(person, reply_app)
    deliver(reply_app, text="Kaks")
    held = post(person, form, "Vastus")
    deliver(reply_app, text="Kolm")  # after the held box was drawn
    again = post(person, reply_form(held.text), "Vastus")
    assert "New since you started writing" in again.text and "Kolm" in again.text and "Kaks" not in again.text
    assert replies_in(reply_app) == []


def test_many_new_messages_show_the_newest_few_and_how_many_more(reply_app, person):
    deliver(reply_app, text="Alguses")
    form = open_form(person, reply_app)
    for n in range(5):
        deliver(reply_app, text=f"Uus {n}")
    held = post(person, form, "Vastus").text
    assert "Uus 0" not in held and "Uus 1" not in held
    assert all(f"Uus {n}" in held for n in (2, 3, 4)) and "and 2 more" in held


def test_two_people_answering_at_once_only_one_reply_is_queued(reply_app, person, bob):
    deliver(reply_app, text="Kas keegi vastab?")
    forms = {"alice": open_form(person, reply_app), "bob": open_form(bob, reply_app)}
    assert forms["alice"]["seen_message_id"] == forms["bob"]["seen_message_id"]
    start, answers = threading.Barrier(2), {}

    def answer(name, client):
        start.wait()
        answers[name] = post(client, forms[name], f"Vastab {name}")

    threads = [threading.Thread(target=answer, args=item) for item in (("alice", person), ("bob", bob))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(response.status_code == 200 for response in answers.values())
    [queued] = replies_in(reply_app)
    [held] = [response.text for response in answers.values() if "New since you started writing" in response.text]
    assert queued.text in held  # the one held shows the other's reply
    assert send_jobs(reply_app) == 1


def test_a_reply_from_the_newest_message_sends(reply_app, person):
    deliver(reply_app, text="Tere!")
    deliver(reply_app, text="Kas olete seal?")
    form = open_form(person, reply_app)
    assert "New since" not in post(person, form, "Oleme!").text
    wait_for_status(reply_app, "sent")


def test_ones_own_earlier_reply_holds_nothing(reply_app, person):
    deliver(reply_app, text="Tere!")
    form = open_form(person, reply_app)
    post(person, form, "Esimene vastus")
    second = post(person, {**form, "key": "second-key-0123456789"}, "Teine vastus")  # another tab, same page
    assert "New since" not in second.text
    assert [reply.text for reply in wait_for_status(reply_app, "sent", count=2)] == ["Esimene vastus", "Teine vastus"]


def test_without_a_seen_message_id_nothing_is_checked(reply_app, person):
    """An older form or a script that sends no `seen_message_id`: as before the guard."""
    deliver(reply_app, text="Tere!")
    form = open_form(person, reply_app)
    deliver(reply_app, text="Uus sõnum")
    del form["seen_message_id"]
    assert "New since" not in post(person, form, "Vastus ilma kontrollita").text
    wait_for_status(reply_app, "sent")


def test_after_a_send_the_box_carries_the_reply_just_stored(reply_app, person):
    deliver(reply_app, text="Tere!")
    response = post(person, open_form(person, reply_app), "Vastus")
    [reply] = replies_in(reply_app)
    assert reply_form(response.text)["seen_message_id"] == str(reply.id)

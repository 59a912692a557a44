"""Opt-outs: one key for a number everywhere, who may lift a customer's STOP, and the audit trail."""

import json

import pytest
import sqlalchemy as sa

from app import audit
from app.contacts import optouts
from app.db.models import AuditEvent, OptOut, Suppression
from app.extensions import db
from app.replies import reply_box
from conftest import ONE_DATABASE, body_for, conversation_of
from helpers import post

NUMBER = "+37255577003"


def opt_events(app) -> list[tuple]:
    """(action, username, details) of the opt-out changes in the audit trail, oldest first."""
    with app.app_context():
        events = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.username, AuditEvent.details)
            .where(AuditEvent.action.in_(["opted_out", "opted_in"]))
            .order_by(AuditEvent.id)
        ).all()
    return [(action, username, json.loads(details)) for action, username, details in events]


def conversation_id(app, sender: str = NUMBER) -> int:
    with app.app_context():
        return conversation_of(sender).id


def erase(admin, conversation: int) -> None:
    url = f"/admin/conversations/{conversation}/delete"
    assert post(admin, url, url).status_code == 200


def test_a_start_from_another_sender_does_not_lift_the_block_an_erasure_left(app, admin, deliver):
    """The finding: `37255577003#` is not the number +37255577003 (its conversation is another
    one), so its START must not end the block on the erased, opted-out number."""
    deliver(body_for(sender=NUMBER, text="STOP"))
    erase(admin, conversation_id(app))
    deliver(body_for(sender="37255577003#", text="START"))
    with app.app_context():
        assert conversation_of("37255577003#") is not None  # a conversation of its own
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1
    deliver(body_for(sender=NUMBER, text="Tere jälle"))
    with app.app_context():
        assert "opted out before" in reply_box.for_conversation(conversation_of(NUMBER)).note
    # The same number however written is the same key: its START lifts the block, audited.
    deliver(body_for(sender="372 5557 7003", text="START"))
    with app.app_context():
        assert "opted out before" not in reply_box.for_conversation(conversation_of(NUMBER)).note
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    assert opt_events(app)[-1] == (
        "opted_in",
        None,
        {"conversation": conversation_id(app), "by": "customer", "erasure_block_lifted": True},
    )


@ONE_DATABASE
def test_the_hash_of_a_number_is_its_conversations_key(app):
    with app.app_context():
        assert audit.number_hash("372 5557 7003") == audit.number_hash(NUMBER) == audit.number_hash("0037255577003")
        assert audit.number_hash("37255577003#") != audit.number_hash(NUMBER)


def test_an_agent_cannot_lift_a_customers_stop_and_an_admin_needs_a_reason(app, admin, agent, deliver):
    deliver(body_for(sender=NUMBER, text="STOP"))
    conversation = conversation_id(app)
    with app.app_context():
        stop_message = conversation_of(NUMBER).last_message_id
    path = f"/conversations/{conversation}"
    agent_page = agent.client.get(path).text
    assert "only an admin can opt them back in" in agent_page and "Opt back in" not in agent_page
    assert post(agent, path + "/opt-out", path, opted_out="no").status_code == 403
    assert 'name="reason" required' in admin.client.get(path).text
    refused = post(admin, path + "/opt-out", path, opted_out="no", reason="  ")
    assert refused.status_code == 400 and "Say why the customer" in refused.text
    # The form sits in the header's "More" menu: open, or the admin sees no error at all.
    assert '<details class="more-actions" id="more-actions" open>' in refused.text
    with app.app_context():
        assert conversation_of(NUMBER).opted_out
    assert (
        post(
            admin, path + "/opt-out", path, opted_out="no", reason="She called: wants delivery texts again"
        ).status_code
        == 303
    )
    with app.app_context():
        assert not conversation_of(NUMBER).opted_out
    assert opt_events(app) == [
        ("opted_out", None, {"conversation": conversation, "by": "customer", "message": stop_message}),
        (
            "opted_in",
            "alice",
            {"conversation": conversation, "by": "user", "reason": "She called: wants delivery texts again"},
        ),
    ]
    with app.app_context():  # each event is at its opt-out's own time
        assert (
            db.session.execute(sa.select(OptOut.at).order_by(OptOut.id)).scalars().all()
            == db.session.execute(
                sa.select(AuditEvent.at).where(AuditEvent.action.in_(["opted_out", "opted_in"])).order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )


def test_a_stop_arriving_after_the_page_was_shown_is_not_lifted_by_an_agent(app, agent, deliver):
    """The route checked who may opt back in before the write: a STOP arriving in between was
    lifted like a person's opt-out. The check is made again holding the write lock."""
    deliver(body_for(sender=NUMBER, text="Tere"))
    conversation = conversation_id(app)
    path = f"/conversations/{conversation}"
    assert post(agent, path + "/opt-out", path, opted_out="yes").status_code == 303
    assert "Opt back in" in agent.client.get(path).text  # the page an agent has open
    deliver(body_for(sender=NUMBER, text="STOP"))  # already out: the customer's STOP is the newer word
    with app.app_context():
        with pytest.raises(optouts.LiftRefused):
            optouts.set_opted_out(conversation, False, 2, may_lift_stop=False)
        with pytest.raises(optouts.LiftRefused):  # an admin too needs a reason
            optouts.set_opted_out(conversation, False, 1, may_lift_stop=True)
        assert conversation_of(NUMBER).opted_out


def test_an_agent_may_undo_an_opt_out_a_person_made_and_every_change_is_audited(app, agent, deliver):
    deliver(body_for(sender=NUMBER, text="please stop texting me"))
    conversation = conversation_id(app)
    path = f"/conversations/{conversation}"
    assert post(agent, path + "/opt-out", path, opted_out="yes").status_code == 303
    assert post(agent, path + "/opt-out", path, opted_out="no").status_code == 303
    deliver(body_for(sender=NUMBER, text="STOP"))
    deliver(body_for(sender=NUMBER, text="Stop!"))  # already out: no change, no event
    deliver(body_for(sender=NUMBER, text="START"))
    assert [(action, username, details["by"]) for action, username, details in opt_events(app)] == [
        ("opted_out", "bob", "user"),
        ("opted_in", "bob", "user"),
        ("opted_out", None, "customer"),
        ("opted_in", None, "customer"),
    ]


def test_an_agent_cannot_lift_the_block_an_erasure_left_by_opting_out_and_back_in(app, admin, agent, deliver):
    deliver(body_for(sender=NUMBER, text="STOP"))
    erase(admin, conversation_id(app))
    deliver(body_for(sender=NUMBER, text="Tere jälle"))
    path = f"/conversations/{conversation_id(app)}"
    assert post(agent, path + "/opt-out", path, opted_out="yes").status_code == 303
    assert post(agent, path + "/opt-out", path, opted_out="no").status_code == 403
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1
    assert post(admin, path + "/opt-out", path, opted_out="no", reason="Asked in the shop").status_code == 303
    assert opt_events(app)[-1] == (
        "opted_in",
        "alice",
        {
            "conversation": conversation_id(app),
            "by": "user",
            "reason": "Asked in the shop",
            "erasure_block_lifted": True,
        },
    )

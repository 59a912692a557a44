"""Messente's account-wide blacklist kept in step with opt-outs (MESSENTE_BLACKLIST_SYNC): an
opt-out enqueues the `sync_blacklist` job in its own transaction (app/contacts/optouts.py), and
the job carries every pending change to Messente."""

import sqlalchemy as sa
from flask import current_app

from app import jobs
from app.db.models import Conversation
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.jobs import rate_budget
from app.replies import messente

SYNC_BLACKLIST = "sync_blacklist"


def sync_blacklist(client: "messente.Messente") -> int:
    """Carry opt-outs to Messente's blacklist (MESSENTE_BLACKLIST_SYNC); how many calls failed
    (each failure is shown on its conversation, and the job tries again)."""
    pending = db.session.execute(
        sa.select(Conversation.id, Conversation.sender, Conversation.blacklist)
        .where(Conversation.blacklist.in_(["add", "remove"]))
        .limit(100)
    ).all()
    db.session.rollback()  # no read transaction held across the calls
    failures = 0
    for conversation_id, phone, wanted in pending:
        call = client.add_to_blacklist if wanted == "add" else client.remove_from_blacklist
        rate_budget.wait_turn(rate_budget.MESSENTE, current_app.config["MESSENTE_REQUESTS_PER_SECOND"])
        outcome = call(phone)
        done = isinstance(outcome, messente.Done)
        failures += not done
        # Only an entry this app made is "added", and so removed again when the customer opts back in.
        added = "added" if wanted == "add" and isinstance(outcome, messente.Done) and not outcome.already else None
        problem = None if isinstance(outcome, messente.Done) else f"Messente's blacklist: {outcome.reason}"
        with write_transaction() as session:
            session.execute(
                sa.update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.blacklist == wanted)
                .values(blacklist=added if done else wanted, blacklist_problem=problem, change_seq=change_number())
            )
    return failures


@jobs.kind(SYNC_BLACKLIST)
def sync_blacklist_job(payload: dict, attempt: "jobs.Attempt") -> None:
    """Both calls are idempotent: a failed sync is simply run again, with backoff."""
    client = messente.from_config(current_app.config)
    if client is None:
        return
    failures = sync_blacklist(client)
    if failures:
        plural = "s" if failures != 1 else ""
        raise RuntimeError(f"{failures} blacklist call{plural} failed (shown on the conversations)")

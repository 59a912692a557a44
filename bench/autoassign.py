"""Auto-assignment of a burst: 200 new customers write at once, and the server gives them out.

The server as `make run` starts it, on a fresh SQLite database with auto-assignment on, PEOPLE
people on shift and a cap of BURST / PEOPLE open conversations each (rounded up: at 200, every
cap is reached, none passed). BURST callbacks from as many new customers arrive at once from
CONCURRENCY connections; ingest enqueues the sweep, and the workers' job runners give the
conversations out one write transaction each (app/contacts/autoassign.py). Figures: the time
from the first callback until every conversation has its owner, against the ceiling: the same
burst stored with auto-assignment off (until every callback is answered, each committed); each
conversation assigned exactly once (one `assigned` audit event each); and the most open
conversations any one person holds (at most the cap).
"""

import json
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from app.accounts import users
from app.callbacks import signing
from app.contacts import autoassign, owners
from app.db.models import AuditEvent, Conversation
from app.db.unit_of_work import write_transaction
from app.extensions import db

from . import ingest
from .data import SECRET, Server, bench_app, fresh_database
from .report import Row

BURST = 200  # new conversations at once (--autoassign-burst)
PEOPLE = 8
CONCURRENCY = 16
TARGET_SECONDS = 10.0  # a new conversation is in someone's list within seconds
ASSIGNED_TIMEOUT = 120.0


def measure(workdir: Path, log, burst: int = BURST) -> list[Row]:
    cap = -(-burst // PEOPLE)
    stored = run(workdir, "autoassign-off", burst, cap, on=False)
    assigned = run(workdir, "autoassign", burst, cap, on=True)
    seconds, per_conversation, most = assigned["seconds"], assigned["per_conversation"], assigned["most"]
    exactly_once = len(per_conversation) == burst and set(per_conversation.values()) == {1}
    log(
        f"  auto-assignment of {burst}: stored in {stored['seconds']:.2f} s with it off; all assigned "
        f"{seconds:.2f} s after the first callback with it on; {sum(per_conversation.values())} assignments "
        f"of {len(per_conversation)} conversations; most open per person {most} (cap {cap})"
    )
    label = f"{burst} conversations"
    return [
        Row(
            "auto-assignment of a burst: time until all are assigned",
            label,
            seconds,
            "s",
            stored["seconds"],
            stored["seconds"] / seconds,
            f"< {TARGET_SECONDS:.0f} s",
            seconds < TARGET_SECONDS and exactly_once,
            note=f"from the first of {burst} callbacks at once; {PEOPLE} people on shift, cap {cap}; "
            "ceiling: the same burst stored with auto-assignment off",
        ),
        Row(
            "auto-assignment of a burst: each assigned exactly once",
            label,
            sum(per_conversation.values()),
            "assignments",
            burst,
            None,
            f"{burst}, one each",
            exactly_once,
        ),
        Row(
            "auto-assignment of a burst: most open conversations of one person",
            label,
            most,
            "conversations",
            target=f"<= {cap} (the cap)",
            met=most <= cap,
        ),
    ]


def run(workdir: Path, name: str, burst: int, cap: int, on: bool) -> dict:
    """The burst into a fresh inbox: seconds from its first callback until every conversation is
    assigned (`on`) or stored (off); each conversation's `assigned` events; the most one person has."""
    url = fresh_database(workdir, name)
    app = bench_app(url)
    with app.app_context():
        if on:
            for n in range(PEOPLE):
                with write_transaction():
                    person = users.create_user(f"agent{n}", "bench password 1").id
                owners.set_on_shift(person, True)
            autoassign.set_settings(True, cap, [])
        db.engine.dispose()
    port = ingest.free_port()
    base = f"http://127.0.0.1:{port}"
    with Server(ingest.make_run(port, "app:create_app"), url, port) as server, app.app_context():
        bodies = [
            (
                f'{{"msg_id": "bench-burst-{n}", "channel": "sms", "recipient": "+37250000000", '
                f'"time": "2026-01-01T08:00:00.000000Z", "text": "Tere! Kas saate aidata?", '
                f'"sender": "+3725558{n:04d}"}}'
            ).encode()
            for n in range(burst)
        ]
        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(lambda body: post(base, body), bodies))
        if set(answers) != {200}:
            raise RuntimeError(f"callbacks answered {Counter(answers)}: {server.errors()[-500:]}")
        done = time.monotonic()
        deadline = started + ASSIGNED_TIMEOUT
        while on and time.monotonic() < deadline:
            waiting = db.session.scalar(
                sa.select(sa.func.count()).select_from(Conversation).where(Conversation.assignee_id.is_(None))
            )
            db.session.rollback()
            if waiting == 0:
                done = time.monotonic()
                break
            time.sleep(0.02)
        per_conversation = Counter(
            json.loads(details)["conversation"]
            for details in db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "assigned"))
        )
        most = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Conversation)
            .where(Conversation.assignee_id.is_not(None), Conversation.status == "open")
            .group_by(Conversation.assignee_id)
            .order_by(sa.func.count().desc())
            .limit(1)
        )
        db.engine.dispose()
    return {"seconds": done - started, "per_conversation": per_conversation, "most": most or 0}


def post(base: str, body: bytes) -> int:
    request = urllib.request.Request(
        base + "/callbacks/inbound",
        data=body,
        headers={"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, SECRET)},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        return response.status

"""A burst of replies: many queued at once, sent through the fake Omnichannel API by the server.

The server as `make run` starts it, its Messente API pointed at the fake (tests/fake_messente.py,
a real HTTP server in this process). The replies are queued in one transaction, as that many
people pressing Send at the same moment would leave them, each with its send job; the workers' job
runners find them (within JOBS_POLL_SECONDS) and send them at the configured rate. Figures: the time from the commit until the fake
has seen the last one, each reply sent exactly once (one API request per reply, every reply
`sent`), and the most requests the fake saw in any one-second window (Messente allows 150).

`burst` is shared with bench/scheduled.py: the same replies, scheduled for one moment instead.
"""

import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from app import clock, replies
from app.accounts import users
from app.db.models import Conversation, Message
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.ops import demo

from . import ingest
from .data import ROOT, Server, bench_app, fresh_database
from .report import Row

sys.path.insert(0, str(ROOT / "tests"))
from fake_messente import FakeMessente  # the tests' fake, a real HTTP server

WINDOW_LIMIT = 150  # Messente's requests a second
SMS_SENDER = "BenchShop"
SENT_TIMEOUT = 300.0


@dataclass
class Burst:
    """What the fake saw of `count` replies queued (or scheduled) in one commit."""

    count: int
    queued_seconds: float  # the queueing transaction, to its commit
    committed_at: float  # time.monotonic() at the commit
    due_at: float  # time.monotonic() when they were due: the commit, or their scheduled moment
    sends: list  # the fake's API requests that send a message
    statuses: Counter  # the outbound rows' statuses at the end

    @property
    def first(self) -> float:
        return min((request.at for request in self.sends), default=self.due_at)

    @property
    def last(self) -> float:
        return max((request.at for request in self.sends), default=self.due_at)

    @property
    def busiest(self) -> int:
        """The most requests in any one-second window."""
        starts = sorted(request.at for request in self.sends)
        return max(
            (sum(1 for at in starts[i : i + WINDOW_LIMIT + 1] if at < start + 1.0) for i, start in enumerate(starts)),
            default=0,
        )

    @property
    def exactly_once(self) -> bool:
        per_reply = Counter(request.json["messages"][0]["text"] for request in self.sends if request.json)
        return len(per_reply) == self.count and set(per_reply.values()) == {1} and self.statuses["sent"] == self.count


def burst(workdir: Path, name: str, count: int, log, due_in: float | None = None) -> Burst:
    """`count` replies to `count` customers queued in one transaction through a server sending to
    the fake; with `due_in`, scheduled for one moment that many seconds ahead (whole seconds, as
    the app keeps a send time) instead of sent at once. Returns when every one is sent or failed."""
    url = fresh_database(workdir, name)
    with FakeMessente("api-user", "api-password") as fake:
        settings = {
            "MESSENTE_API_URL": fake.url,
            "MESSENTE_API_USERNAME": "api-user",
            "MESSENTE_API_PASSWORD": "api-password",
            "MESSENTE_SMS_SENDER": SMS_SENDER,
        }
        app = bench_app(url)
        app.config.update(settings)
        with app.app_context():
            demo.seed(count, count)  # one message from each of `count` customers
            with write_transaction():
                author = users.create_user("bench", "bench password 1").id
            conversations = list(db.session.scalars(sa.select(Conversation)))
            db.session.expunge_all()
        port = ingest.free_port()
        with Server(ingest.make_run(port, "bench.app:create_bench_app"), url, port, settings) as server:
            with app.app_context():
                send_at: datetime | None = None
                if due_in is not None:
                    send_at = (clock.now() + timedelta(seconds=due_in)).replace(microsecond=0)
                started = time.monotonic()
                with write_transaction():  # queue_reply joins it: all committed at once
                    for n, conversation in enumerate(conversations):
                        replies.queue_reply(
                            conversation,
                            f"Bench reply {n}: thanks, we are on it.",
                            "",
                            None,
                            author,
                            f"bench-reply-{n:08d}-key",
                            send_at=send_at,
                        )
                committed_at = time.monotonic()
                due_at = committed_at
                if send_at is not None:  # the moment on the monotonic clock the fake's times are on
                    due_at = committed_at + (send_at - clock.now()).total_seconds()
                deadline = max(committed_at, due_at) + SENT_TIMEOUT
                while time.monotonic() < deadline:
                    done = db.session.scalar(
                        sa.select(sa.func.count())
                        .select_from(Message)
                        .where(Message.direction == "out", Message.status.in_(["sent", "failed", "unconfirmed"]))
                    )
                    db.session.rollback()
                    if done >= count:
                        break
                    time.sleep(0.2)
                statuses = Counter(
                    dict(
                        db.session.execute(
                            sa.select(Message.status, sa.func.count())
                            .where(Message.direction == "out")
                            .group_by(Message.status)
                        ).all()
                    )
                )
                db.engine.dispose()
            errors = server.errors()
    sends = [request for request in fake.requests if request.path.endswith("/omnimessage")]
    outcome = Burst(count, committed_at - started, committed_at, due_at, sends, statuses)
    log(
        f"  {count} {'scheduled ' if due_in is not None else ''}replies: queued in {outcome.queued_seconds:.1f} s, "
        f"first sent {outcome.first - due_at:+.1f} s and last {outcome.last - due_at:+.1f} s from when they were due, "
        f"{len(sends)} API requests, busiest second {outcome.busiest}; statuses {dict(statuses)}"
        + (f"; server log: {errors[-300:]}" if errors.strip() else "")
    )
    return outcome


def measure(workdir: Path, count: int, log) -> list[Row]:
    sent = burst(workdir, "replies", count, log)
    label = f"{count:,} replies"
    return [
        Row(
            "replies: time until all are sent",
            label,
            sent.last - sent.committed_at,
            "s",
            note=f"from the commit of {count:,} queued replies to the fake's last request",
        ),
        Row(
            "replies: each sent exactly once",
            label,
            len(sent.sends),
            "API requests",
            count,
            None,
            f"{count:,}, one each, all sent",
            sent.exactly_once,
            note=f"statuses {dict(sent.statuses)}",
        ),
        Row(
            "replies: most API requests in one second",
            label,
            sent.busiest,
            "requests",
            target=f"<= {WINDOW_LIMIT}",
            met=sent.busiest <= WINDOW_LIMIT,
        ),
    ]

"""A burst of replies: many queued at once, sent through the fake Omnichannel API by the server.

The server as `make run` starts it, its Messente API pointed at the fake (tests/fake_messente.py,
a real HTTP server in this process). The replies are queued in one transaction, as that many
people pressing Send at the same moment would leave them, each with its send job; the workers' job
runners find them (within JOBS_POLL_SECONDS) and send them at the configured rate. Figures: the time from the commit until the fake
has seen the last one, each reply sent exactly once (one API request per reply, every reply
`sent`), and the most requests the fake saw in any one-second window (Messente allows 150).
"""

import sys
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from app import replies
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


def measure(workdir: Path, count: int, log) -> list[Row]:
    url = fresh_database(workdir, "replies")
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
                        )
                queued_at = time.monotonic()
                deadline = queued_at + SENT_TIMEOUT
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
    per_reply = Counter(request.json["messages"][0]["text"] for request in sends if request.json)
    last = max((request.at for request in sends), default=queued_at)
    starts = sorted(request.at for request in sends)
    busiest = max(
        (sum(1 for at in starts[i : i + WINDOW_LIMIT + 1] if at < start + 1.0) for i, start in enumerate(starts)),
        default=0,
    )
    exactly_once = len(per_reply) == count and set(per_reply.values()) == {1} and statuses["sent"] == count
    log(
        f"  {count} replies: queued in {queued_at - started:.1f} s, all sent {last - queued_at:.1f} s after the "
        f"commit, {len(sends)} API requests, busiest second {busiest}; statuses {dict(statuses)}"
        + (f"; server log: {errors[-300:]}" if errors.strip() else "")
    )
    label = f"{count:,} replies"
    return [
        Row(
            "replies: time until all are sent",
            label,
            last - queued_at,
            "s",
            note=f"from the commit of {count:,} queued replies to the fake's last request",
        ),
        Row(
            "replies: each sent exactly once",
            label,
            len(sends),
            "API requests",
            count,
            None,
            f"{count:,}, one each, all sent",
            exactly_once,
            note=f"statuses {dict(statuses)}",
        ),
        Row(
            "replies: most API requests in one second",
            label,
            busiest,
            "requests",
            target=f"<= {WINDOW_LIMIT}",
            met=busiest <= WINDOW_LIMIT,
        ),
    ]

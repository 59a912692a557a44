"""Inbox reads at one data size: server time in-process (Flask test client, logged in).

Each request is timed around the test client call: the app's whole work for the request
(routing, login, queries, template) without a network. The ceiling is a logged-in no-op
route through the same stack.
"""

import dataclasses
import datetime
import random
import re
import statistics
import time
import urllib.parse

import sqlalchemy as sa

from app import clock, contacts
from app.accounts import users
from app.api import tokens
from app.contacts import labels
from app.db.folding import fold
from app.db.models import Conversation, ConversationLabel, Mention, Message, Notification, User
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db

from .app import NOOP_LOGGED_IN
from .data import bench_app, settle
from .report import Row, size_label

PAGE_SIZE = 50
DEEP_PAGE = 500
THREAD_LENGTH = 1_000
SEARCH_TARGET_MS = 15
REPORT_TARGET_MS = 500
# Conversations given a contact name before the reads: one in this many, as a team names its regulars.
NAMED_EVERY = 50
MAX_NAMED = 1_000  # one transaction each
FIRST_NAMES = ["Mari", "Jaan", "Kati", "Andres", "Liis", "Olga", "Sergei", "Aino", "Jānis", "Rūta", "Mikko", "Tiina"]
LAST_NAMES = ["Tamm", "Saar", "Sepp", "Mägi", "Kask", "Ivanova", "Petrov", "Ozola", "Kazlauskas", "Virtanen"]
PASSWORD = "bench password 1"
# The views' share of the conversations, by id: one in OWNED_EVERY has an owner (the `bench` user
# one in OWNED_EVERY * len(OWNERS), the others the rest), one in LABELLED_EVERY a label (the
# labels in turn), one in SNOOZED_EVERY is snoozed, one in MENTIONED_EVERY has a note mentioning
# `bench`. Set by a few statements, however many conversations there are.
OWNERS = ["bench", "bench-ann", "bench-ben"]
OWNED_EVERY = 4
LABELS = ["refund", "vip", "callback"]
LABELLED_EVERY = 20
SNOOZED_EVERY = 50
MENTIONED_EVERY = 100
MENTION_TEXT = "@bench could you call them back?"
ROW = re.compile(r'<li data-sender="')  # a conversation's row in the list
POSTGRESQL = "PostgreSQL: "  # before the name of a row measured on PostgreSQL
# Every sub-resource an HTML page can make the browser fetch.
SUB_RESOURCE = re.compile(r'<(?:link|script|img|iframe|source)\b[^>]*?\b(?:href|src)="([^"]+)"')


def measure(url: str, messages: int, samples: int, log) -> list[Row]:
    app = bench_app(url)
    app.config["API_RATE_LIMIT"] = 10**9  # the benchmark measures the work, not the limit
    size = size_label(messages)
    with app.app_context():
        with write_transaction():
            users.create_user("bench", PASSWORD)
        api_secret = tokens.create_token("bench", ["read"])[1]
        deep_page, before = deep_page_cursor()
        middle, end = search_terms()
        sender, thread_length = thread_sender()
        contact_name = name_some_contacts()
        label_name = give_views_their_share()
        if db.engine.dialect.name == "postgresql":
            # As after the seed (bench/data.py): autovacuum soon leaves the tables so after these updates.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql(
                    "VACUUM ANALYZE conversation, conversation_label, message, mention, notification"
                )
            settle(db.engine)
    client = app.test_client()
    log_in(client)

    def median_ms(path: str, status: int = 200) -> float:
        return median_request_ms(client, path, status, samples)

    noop = median_ms(NOOP_LOGGED_IN)
    first_page = client.get("/")
    newest = re.search(r"since=(\d+)", first_page.text).group(1)
    view_timings = [
        (name, median_view_ms(client, path, samples))
        for name, path in [
            ("Mine", "/?assignee=me"),
            ("of one label", "/?label=" + urllib.parse.quote(label_name)),
            ("Mentions", "/?view=mentions"),
            ("Snoozed", "/?view=snoozed"),
        ]
    ]
    timings = [
        ("inbox first page", median_ms("/"), 15, ""),
        (
            f"inbox page {DEEP_PAGE}",
            median_ms(f"/?before={before}"),
            15,
            f"page {deep_page}" if deep_page != DEEP_PAGE else "",
        ),
        (
            f"thread of {THREAD_LENGTH:,} messages",
            median_ms(f"/conversations/{sender}"),
            30,
            f"{thread_length:,} messages" if thread_length != THREAD_LENGTH else "",
        ),
        ("poll, nothing new", median_ms(f"/?since={newest}", status=204), 3, ""),
        # The views by owner, label, mention and snooze, each with rows (give_views_their_share).
        *((f"view {name}", ms, 15, note) for name, (ms, note) in view_timings),
        # The Reports page over the last 30 days (of the demo's 60): tallies and openings, not messages.
        ("reports, last 30 days", median_ms("/reports?range=last_30"), REPORT_TARGET_MS, ""),
    ]
    rows = [
        Row(f"{what}: server time, median", size, ms, "ms", noop, noop / ms, f"< {target} ms", ms < target, note)
        for what, ms, target, note in timings
    ]
    # The same reads through the JSON API, with a token; the ceiling is the API's own no-op
    # (GET /api/v1/me: the token check, the rate limit, the smallest answer).
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_secret}"
    api_noop = median_request_ms(api, "/api/v1/me", 200, samples)
    for what, ms, target in [
        ("API: conversations first page", median_request_ms(api, "/api/v1/conversations?status=all", 200, samples), 15),
        (
            f"API: newest 100 messages of a thread of {THREAD_LENGTH:,}",
            median_request_ms(api, f"/api/v1/conversations/{sender}/messages?limit=100", 200, samples),
            15,
        ),
    ]:
        rows.append(
            Row(f"{what}: server time, median", size, ms, "ms", api_noop, api_noop / ms, f"< {target} ms", ms < target)
        )
    # The search box's fixed mix: each query through the whole page (conversations by number and
    # name, messages by text), p50 and p95.
    for kind, query in [
        ("six digits from the middle of a number", middle),
        ("six digits at the end of a number", end),
        ("three common digits", middle[-3:]),
        ("a contact name", contact_name),
        ("a word from message texts", "tellimus"),
        ("a three-character fragment", "ähe"),
    ]:
        p50, p95 = percentiles_ms(client, "/?q=" + urllib.parse.quote(query), samples)
        rows.append(
            Row(
                f"search, {kind}: server time, p50",
                size,
                p50,
                "ms",
                noop,
                noop / p50,
                f"< {SEARCH_TARGET_MS} ms",
                p50 < SEARCH_TARGET_MS,
                f"q={query}",
            )
        )
        rows.append(Row(f"search, {kind}: server time, p95", size, p95, "ms", noop, noop / p95, note=f"q={query}"))

    with app.app_context():
        db.engine.dispose()
    if sa.make_url(url).get_backend_name() == "postgresql":
        log(f"  reads measured on PostgreSQL: first page {timings[0][1]:.1f} ms, noop {noop:.2f} ms")
        # The page's bytes and static files are the same on either database: measured on SQLite.
        return [dataclasses.replace(row, what=POSTGRESQL + row.what) for row in rows]
    page = client.get("/").data
    sub_resources = sorted(set(SUB_RESOURCE.findall(page.decode())))
    # A repeat visit fetches a sub-resource again unless its answer may be kept without asking.
    fetched_again = [
        path for path in sub_resources if "immutable" not in client.get(path).headers.get("Cache-Control", "")
    ]
    rows.append(
        Row(
            "inbox page: HTML size for 50 rows",
            size,
            len(page) / 1024,
            "KB",
            target="< 40 KB",
            met=len(page) < 40 * 1024,
        )
    )
    rows.append(
        Row(
            "inbox page: static files a repeat visit fetches",
            size,
            len(fetched_again),
            "requests",
            target="0",
            met=not fetched_again,
            note=f"{len(sub_resources)} on the page"
            + (": " + ", ".join(fetched_again) if fetched_again else ", each cached as immutable"),
        )
    )
    log(f"  reads measured: first page {timings[0][1]:.1f} ms, noop {noop:.2f} ms")
    return rows


def median_request_ms(client, path: str, status: int, samples: int) -> float:
    for _ in range(3):  # warm the caches and the connection pool
        client.get(path)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        if response.status_code != status:
            raise RuntimeError(f"GET {path} answered {response.status_code}, expected {status}")
    return statistics.median(times) * 1000


def median_view_ms(client, path: str, samples: int) -> tuple[float, str]:
    """median_request_ms of a list view that must show rows (an empty or broken view never passes
    as fast), and how many rows its page shows, as a note."""
    rows = len(ROW.findall(client.get(path).text))
    if not rows:
        raise RuntimeError(f"GET {path} shows no conversations")
    return median_request_ms(client, path, 200, samples), f"{rows} rows on {path}"


def percentiles_ms(client, path: str, samples: int) -> tuple[float, float]:
    """The median and the 95th percentile of `samples` requests (after 3 warm-ups)."""
    for _ in range(3):
        client.get(path)
    times = []
    for _ in range(max(samples, 20)):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
    times.sort()
    return statistics.median(times) * 1000, times[int(0.95 * (len(times) - 1))] * 1000


def name_some_contacts() -> str:
    """Give one conversation in NAMED_EVERY a contact name, as the inbox does; one of the names."""
    ids = list(db.session.scalars(sa.select(Conversation.id).order_by(Conversation.id)))[::NAMED_EVERY][:MAX_NAMED]
    rng = random.Random(len(ids))
    names = [f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {n}" for n in range(len(ids))]
    for conversation_id, name in zip(ids, names, strict=True):
        contacts.set_contact(conversation_id, name, "")
    return names[len(names) // 2]


def give_views_their_share() -> str:
    """Owners, labels, snoozes and mentions for a share of the conversations (OWNED_EVERY and the
    rest), as the app writes them, in one transaction of a few statements each over every
    conversation (no row by row); the name of one label."""
    others = [users.create_user(name, None).id for name in OWNERS[1:]]  # no password: nobody logs in as them
    label_ids = [labels.create(name) for name in LABELS]
    now = clock.now()
    by_id = Conversation.id
    with write_transaction() as session:
        change = change_number()
        bench_id = session.scalar(sa.select(User.id).where(User.username == OWNERS[0]))
        owner_ids = [bench_id, *others]
        every = OWNED_EVERY * len(owner_ids)
        session.execute(
            sa.update(Conversation)
            .where(by_id % OWNED_EVERY == 0)
            .values(
                assignee_id=sa.case(*((by_id % every == n * OWNED_EVERY, owner) for n, owner in enumerate(owner_ids))),
                change_seq=change,
            )
        )
        # Each label on every len(LABELS)-th of the labelled ones; `label_names` as labels.py keeps it.
        every = LABELLED_EVERY * len(label_ids)
        for n, (label_id, name) in enumerate(zip(label_ids, LABELS, strict=True)):
            chosen = by_id % every == n * LABELLED_EVERY + 1
            session.execute(
                sa.insert(ConversationLabel).from_select(
                    ["conversation_id", "label_id"], sa.select(by_id, sa.literal(label_id)).where(chosen)
                )
            )
            session.execute(sa.update(Conversation).where(chosen).values(label_names=name, change_seq=change))
        # Snoozed for three days, as snooze.snooze leaves it (open; its wake job is not needed here).
        session.execute(
            sa.update(Conversation)
            .where(by_id % SNOOZED_EVERY == 2)
            .values(status="open", snoozed_until=now + datetime.timedelta(days=3), change_seq=change)
        )
        # A note by another teammate mentioning `bench`, as notes.add_note stores it: the message,
        # the conversation's count, the mention and its notification.
        mentioned = by_id % MENTIONED_EVERY == 3
        prefix = f"note-bench{change}-"
        session.execute(
            sa.insert(Message).from_select(
                [
                    "conversation_id",
                    "msg_id",
                    "channel",
                    "sender",
                    "text",
                    "sent_at",
                    "received_at",
                    "folded_text",
                    "raw_body",
                    "change_seq",
                    "direction",
                    "author_id",
                ],
                sa.select(
                    by_id,
                    sa.literal(prefix, sa.String) + sa.cast(by_id, sa.String),
                    sa.literal("note"),
                    sa.literal(""),
                    sa.literal(MENTION_TEXT),
                    sa.literal(now, sa.DateTime),
                    sa.literal(now, sa.DateTime),
                    sa.literal(fold(MENTION_TEXT)),
                    sa.literal(b"", sa.LargeBinary),
                    sa.literal(change),
                    sa.literal("note"),
                    sa.literal(others[0]),
                ).where(mentioned),
            )
        )
        session.execute(
            sa.update(Conversation)
            .where(mentioned)
            .values(message_count=Conversation.message_count + 1, change_seq=change)
        )
        notes = sa.select(
            Message.id, sa.literal(bench_id), Message.conversation_id, sa.literal(now, sa.DateTime)
        ).where(Message.msg_id >= prefix, Message.msg_id < prefix + "~")
        session.execute(
            sa.insert(Mention).from_select(["message_id", "user_id", "conversation_id", "created_at"], notes)
        )
        session.execute(
            sa.insert(Notification).from_select(
                ["user_id", "kind", "conversation_id", "created_at"],
                sa.select(Mention.user_id, sa.literal("mention"), Mention.conversation_id, Mention.created_at).where(
                    Mention.user_id == bench_id
                ),
            )
        )
    return LABELS[1]


def log_in(client) -> None:
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")


def deep_page_cursor() -> tuple[int, int]:
    """The `before` cursor of page 500 (or of the last page when there are fewer)."""
    conversations = db.session.scalar(sa.select(sa.func.count()).select_from(Conversation))
    page = max(2, min(DEEP_PAGE, -(-conversations // PAGE_SIZE)))
    # The cursor a reader reaches after following "Older" page - 1 times: the id of the
    # last conversation on the page before.
    before = db.session.scalar(
        sa.select(Conversation.last_message_id)
        .order_by(Conversation.last_message_id.desc())
        .offset((page - 1) * PAGE_SIZE - 1)
        .limit(1)
    )
    return page, before


def search_terms() -> tuple[str, str]:
    """Six digits from the middle of a stored number, and its last six: the number of a sender in
    the middle of the list (by number). Each matches one or few senders; the middle's digits
    start just past the country code (4th digit on), with digits most numbers share."""
    conversations = db.session.scalar(sa.select(sa.func.count()).select_from(Conversation))
    key = db.session.scalar(
        sa.select(Conversation.sender_key)
        .where(sa.func.substr(Conversation.sender_key, -6, 1) != "0")
        .order_by(Conversation.sender)
        .offset(conversations // 2 // 10 * 9)  # those whose last six start with 0 left out: about 1 in 10
        .limit(1)
    )
    # Six digits that start with 0 are searched as a number dialled with its trunk 0 (five digits).
    middle = next((key[n : n + 6] for n in range(3, len(key) - 5) if key[n] != "0"), key[3:9])
    return middle, key[-6:]


def thread_sender() -> tuple[int, int]:
    """The conversation whose message count is nearest to THREAD_LENGTH."""
    sender, count = db.session.execute(
        sa.select(Conversation.id, Conversation.message_count)
        .order_by(sa.func.abs(Conversation.message_count - THREAD_LENGTH))
        .limit(1)
    ).one()
    return sender, count

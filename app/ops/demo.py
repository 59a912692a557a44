"""Demo data in bulk: realistic inbound messages for trying the inbox and for the benchmarks.

The rows go straight into the tables with large executemany INSERTs (COPY on PostgreSQL).
Conversation rows, the numbers each customer wrote to and the daily counts are counted in
Python while the messages are generated, and merged into whatever the database already holds
with ingest's own functions, so after every commit they are exactly what ingesting the same
messages one by one would give. Each message carries its search text (`folding.fold`).

Into an empty inbox everything goes in one transaction, and on SQLite the message table's
secondary indexes and the text search index are built once at its end, from sorted data,
rather than entry by entry (building an index once is several times cheaper than keeping it
up to date row by row). A server running meanwhile waits for the write lock until then; its
callbacks answer 503 and the provider retries them. Into an inbox in use, the messages go in
transactions of MESSAGES_PER_TRANSACTION, each short enough for a live server's writers.

Seeding waits for the write lock as the server does (the busy timeout), and changes SQLite's
journal mode only when nothing else has the database open (see `rollback_journal`).
"""

import bisect
import gc
import itertools
import json
import random
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa

from app import clock, tallies
from app.callbacks import ingest
from app.callbacks.ingest import ConversationTotals, add_to_conversations, add_to_daily_counts, conversation_ids
from app.db import folding
from app.db.models import PREVIEW_LENGTH, Conversation, Message
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import WRITE_LOCK_WAIT_SECONDS, db
from app.jobs import servers
from app.tallies import events

# Into an inbox in use: one transaction per this many messages, so each commit leaves the inbox
# consistent and a server receiving callbacks meanwhile never waits long for the write lock.
MESSAGES_PER_TRANSACTION = 200_000
ROWS_PER_INSERT = 20_000
# SQLite's page cache while seeding, in KiB: the random inserts into the conversation indexes
# stay in memory until the commit writes each page once (restored afterwards).
SQLITE_CACHE_KIB = 512 * 1024
# SQLite's text search index (see app/inbox/search.py): filled by a trigger for each message stored
# anywhere else; here, for a whole transaction's messages at once, in one statement.
FTS_TABLE, FTS_INSERT_TRIGGER = "message_fts", "message_fts_insert"
DAYS = 60
# Unread: what arrived since the team last looked, about a day ago.
UNREAD_SINCE = timedelta(days=1)

CHANNEL_WEIGHTS = {"sms": 55, "whatsapp": 20, "viber": 15, "telegram": 10}
# Country code with mobile prefix, and how many subscriber digits follow: every number is a
# possible one in E.164, so it is its own conversation key (numbers.normalise).
NUMBER_PLANS = [("+3725", 7), ("+3725", 6), ("+3712", 7), ("+3706", 7), ("+35840", 7), ("+4479", 8), ("+79", 9)]
NUMBER_PLAN_WEIGHTS = [50, 10, 8, 8, 10, 6, 8]
# Our numbers: each customer writes to one of them.
RECIPIENTS = ["+37250000000", "+37250000001"]
# The provider's time is a moment before ours.
PROVIDER_DELAYS = [timedelta(milliseconds=50 + 61 * n) for n in range(47)]
# Activity by hour of day (UTC), night to evening.
HOURLY_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 9, 9, 10, 10, 9, 8, 7, 6, 5, 4, 3, 2]

TEMPLATES = [
    "Tere! Kas minu tellimus {n} on juba teel? 📦",
    "Aitäh, sain kätte 👍",
    "Jah, sobib. Näeme homme kell {h}:00.",
    "Palun helistage mulle tagasi, number lõpeb {n}.",
    "Tere, kas teil on laupäeval vabu aegu? Õunakook on valmis 🍎",
    "Ei, tänan. STOP",
    "Здравствуйте! Подтверждаю запись на {h}:00 😊",
    "Спасибо, всё получил.",
    "Можно перенести доставку заказа {n} на пятницу?",
    "Hi, is the offer still valid? Order {n}",
    "Thanks! See you at {h}:30 🙌",
    "Please call me back when you can.",
    "Kiitos! Tilaus {n} saapui perille 🎉",
    "Labdien! Vai pasūtījums {n} ir ceļā?",
    "Laba diena, ačiū už greitą atsakymą 🙏",
    "OK",
    "👍",
    "Jah",
    "Kood: {n}",
    (
        "Tere! Kirjutan pikemalt, sest eelmine kord jäi asi pooleli: tellimus {n} tuli kohale, aga "
        "karbis oli vale suurus ja ma sooviksin selle ümber vahetada. Kas saan selle tuua teie "
        "Tartu kauplusesse või peab saatma pakiautomaati? Ette tänades, Mari 🌷"
    ),
]


def seed(
    messages: int,
    senders: int,
    *,
    now: datetime | None = None,
    rng: random.Random | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Add `messages` demo messages from `senders` new senders; commits as it goes.

    Skewed like real traffic: message counts per sender follow Zipf's law, so a few senders
    have thousands of messages and most have a handful. Times spread over the last 60 days,
    busier on weekdays and in daytime; ids follow arrival order, as ingest hands them out.
    Into an inbox in use too (after a test message, say) they spread over the 60 days: their ids
    come after the messages already there, so the list, ordered by arrival, shows those
    conversations below the demo's until they get a new message. `progress` is called with the
    number of messages just inserted.
    """
    rng = rng or random.Random()
    now = now or clock.now()
    empty = db.session.scalar(sa.select(Message.id).limit(1)) is None
    db.session.rollback()  # the read ends: no snapshot held while the journal mode changes
    senders = max(1, min(senders, messages))
    numbers = sender_numbers(senders, rng)
    channels = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()), k=senders)
    # The sender of each message, in arrival order.
    order = [s for s, count in enumerate(messages_per_sender(messages, senders)) for _ in range(count)]
    rng.shuffle(order)
    arrivals = arrival_times(messages, now, rng)
    texts = text_pool(rng)
    picks = [int(pick * len(texts)) for pick in [rng.random() for _ in range(messages)]]
    plan = Plan(numbers, channels, texts, secrets.token_hex(4), now - UNREAD_SINCE)

    with no_cyclic_gc():  # millions of tuples, no cycles: a collection would find nothing
        # (An inbox filled meanwhile would only make the rebuild cover its rows too.)
        per_transaction = messages if empty else MESSAGES_PER_TRANSACTION
        with rollback_journal(empty):
            for first in range(0, messages, per_transaction):
                count = min(per_transaction, messages - first)
                with write_transaction() as session:
                    connection = session.connection()
                    with large_page_cache(connection), indexes_built_at_the_end(connection, rebuild=empty):
                        plan.store(
                            connection,
                            order[first : first + count],
                            list(itertools.islice(arrivals, count)),
                            picks[first : first + count],
                            progress,
                        )


class Plan:
    """What every transaction's messages share: senders, texts, and the run's msg_id prefix."""

    def __init__(
        self,
        numbers: list[str],
        channels: list[str],
        texts: list[tuple[str, str, str]],
        run: str,
        unread_since: datetime,
    ):
        self.numbers, self.channels, self.texts, self.unread_since = numbers, channels, texts, unread_since
        self.run = run  # demo msg_ids are "demo-<run>-<id>": never a provider's UUID
        self.sub_msg_id_prefix = f"{run}-0000-4000-8000-"  # UUID-shaped, the id in the last group

    def store(
        self,
        connection: sa.Connection,
        chunk: list[int],
        times: list[datetime],
        picks: list[int],
        progress: Callable[[int], None] | None,
    ) -> None:
        """One transaction's messages (senders, increasing times, texts), with everything they change."""
        numbers, channels = self.numbers, self.channels
        next_id = (connection.scalar(sa.select(sa.func.max(Message.id))) or 0) + 1
        change = change_number()
        distinct = set(chunk)
        conversation_of = conversation_ids(connection, {numbers[s]: channels[s] for s in distinct}, change)
        # What a row needs of its sender, looked up once per sender.
        who = {
            s: (numbers[s], channels[s], conversation_of[numbers[s]], RECIPIENTS[s % len(RECIPIENTS)]) for s in distinct
        }
        insert, sqlite = message_inserter(connection), connection.dialect.name == "sqlite"

        def rows(start: int) -> list[tuple]:
            stop = start + ROWS_PER_INSERT
            return self.rows(
                next_id + start, chunk[start:stop], times[start:stop], picks[start:stop], who, change, sqlite
            )

        # The next rows are built while the database stores these: it lets go of the GIL meanwhile.
        with ThreadPoolExecutor(1) as builder:
            upcoming = builder.submit(rows, 0)
            for start in range(0, len(chunk), ROWS_PER_INSERT):
                batch = upcoming.result()
                if start + ROWS_PER_INSERT < len(chunk):
                    upcoming = builder.submit(rows, start + ROWS_PER_INSERT)
                insert(batch)
                if progress:
                    progress(len(batch))
        if connection.dialect.name == "postgresql":
            # We chose the ids: move the id sequence past them for the next callback.
            connection.execute(
                sa.select(sa.func.setval(sa.func.pg_get_serial_sequence("message", "id"), next_id + len(chunk) - 1))
            )
        self.report(connection, chunk, times, who)
        first_unread = bisect.bisect_left(times, self.unread_since)
        add_to_conversations(connection, self.totals(next_id, chunk, times, picks, who, first_unread), change)
        add_to_daily_counts(connection, dict(Counter(map(datetime.date, times))))
        if hasattr(ingest, "add_recipients"):
            ingest.add_recipients(
                connection, {(conversation_id, recipient) for _, _, conversation_id, recipient in who.values()}
            )

    def report(
        self,
        connection: sa.Connection,
        chunk: list[int],
        times: list[datetime],
        who: dict[int, tuple[str, str, int, str]],
    ) -> None:
        """What reports keep (app/tallies), as ingesting the messages would: the "in" tallies, and an
        opening (with its event) for each conversation this chunk starts or reopens. Before the
        conversations move on (a new one has no message yet, a done one is still done)."""
        firsts: dict[int, int] = {}
        for position, s in enumerate(chunk):
            if s not in firsts:
                firsts[s] = position
        ids = sorted(who[s][2] for s in firsts)
        states: dict[int, sa.Row] = {}
        for start in range(0, len(ids), ingest.LOOKUPS_PER_STATEMENT):
            states.update(
                (row.id, row)
                for row in connection.execute(
                    sa.select(Conversation.id, Conversation.status, Conversation.last_message_id).where(
                        Conversation.id.in_(ids[start : start + ingest.LOOKUPS_PER_STATEMENT])
                    )
                )
            )
        openings = []
        for s, position in firsts.items():
            _, channel, conversation_id, recipient = who[s]
            state = states[conversation_id]
            if state.last_message_id is None or state.status == "done":
                openings.append(
                    events.Opening(
                        conversation_id, times[position], state.last_message_id is not None, channel, recipient
                    )
                )
        arrivals = Counter((tallies.bucket_of(at), who[s][1], who[s][3]) for s, at in zip(chunk, times, strict=True))
        tallies.add_many(
            connection,
            events.opened(connection, openings)
            + [
                tallies.Entry(bucket, "in", count, channel, recipient)
                for (bucket, channel, recipient), count in arrivals.items()
            ],
        )

    def rows(
        self,
        next_id: int,
        chunk: list[int],
        times: list[datetime],
        picks: list[int],
        who: dict[int, tuple[str, str, int, str]],
        change: int,
        sqlite: bool,
    ) -> list[tuple]:
        """Message rows in MESSAGE_COLUMNS order, with the body the provider would have sent."""
        rows: list[tuple] = []
        append = rows.append
        delays, texts, run, sub_prefix = PROVIDER_DELAYS, self.texts, self.run, self.sub_msg_id_prefix
        for message_id, s, received_at, pick in zip(itertools.count(next_id), chunk, times, picks):
            sender, channel, conversation_id, recipient = who[s]
            text, text_json, folded = texts[pick]
            sent_at = received_at - delays[message_id % 47]
            sent_iso = sent_at.isoformat(timespec="microseconds")
            msg_id = f"demo-{run}-{message_id:012d}"  # zero-padded: the unique index only appends
            sub_msg_id = f"{sub_prefix}{message_id:012x}"
            raw_body = (
                f'{{"msg_id": "{msg_id}", "sub_msg_id": "{sub_msg_id}", "channel": "{channel}", '
                f'"recipient": "{recipient}", "time": "{sent_iso}Z", "text": {text_json}, "sender": "{sender}"}}'
            ).encode()
            if sqlite:  # the text SQLAlchemy stores for a DateTime
                append(
                    (
                        message_id,
                        conversation_id,
                        msg_id,
                        sub_msg_id,
                        channel,
                        sender,
                        recipient,
                        text,
                        folded,
                        sent_iso.replace("T", " "),
                        received_at.isoformat(" ", "microseconds"),
                        raw_body,
                        change,
                    )
                )
            else:
                append(
                    (
                        message_id,
                        conversation_id,
                        msg_id,
                        sub_msg_id,
                        channel,
                        sender,
                        recipient,
                        text,
                        folded,
                        sent_at,
                        received_at,
                        raw_body,
                        change,
                    )
                )
        return rows

    def totals(
        self,
        next_id: int,
        chunk: list[int],
        times: list[datetime],
        picks: list[int],
        who: dict[int, tuple[str, str, int, str]],
        first_unread: int,
    ) -> dict[int, ConversationTotals]:
        """What each conversation gains from the chunk's messages (ids from next_id, in order), as
        ConversationTotals.add would sum them: counted in C, each sender's last message looked up once."""
        counts, unread = Counter(chunk), Counter(chunk[first_unread:])
        totals = {}
        for s, position in dict(zip(chunk, range(len(chunk)), strict=True)).items():  # each sender's last position
            _, channel, conversation_id, _ = who[s]
            message_id, received_at = next_id + position, times[position]
            totals[conversation_id] = ConversationTotals(
                channel,
                message_count=counts[s],
                unread_count=unread[s],
                last_message_id=message_id,
                last_sent_at=received_at - PROVIDER_DELAYS[message_id % len(PROVIDER_DELAYS)],
                last_text=self.texts[picks[position]][0][:PREVIEW_LENGTH],
                last_inbound_at=received_at,
            )
        return totals


# What a demo message has; the reply columns keep their defaults (inbound, no status).
MESSAGE_COLUMNS = [
    "id",
    "conversation_id",
    "msg_id",
    "sub_msg_id",
    "channel",
    "sender",
    "recipient",
    "text",
    "folded_text",
    "sent_at",
    "received_at",
    "raw_body",
    "change_seq",
]


def message_inserter(connection: sa.Connection) -> Callable[[list[tuple]], None]:
    """A function storing message rows (values in MESSAGE_COLUMNS order, as the driver takes them).

    Straight to the driver: SQLAlchemy's typed executemany converts every value of every row in
    Python, which costs more than the database's own work. PostgreSQL takes them by COPY.
    """
    driver = connection.connection.driver_connection
    assert driver is not None  # None only once the connection is closed
    if connection.dialect.name == "postgresql":
        copy_sql = f"COPY message ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN"

        def copy(rows: list[tuple]) -> None:
            with driver.cursor() as cursor, cursor.copy(copy_sql) as stream:
                for row in rows:
                    stream.write_row(row)

        return copy
    statement = (
        sa.insert(sa.table("message", *map(sa.column, MESSAGE_COLUMNS)))
        .compile(dialect=connection.dialect, column_keys=MESSAGE_COLUMNS)
        .string
    )

    def insert(rows: list[tuple]) -> None:
        driver.executemany(statement, rows)

    return insert


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def rollback_journal(empty: bool) -> Iterator[None]:
    """Into an empty SQLite file: a rollback journal rather than the WAL while seeding, then WAL again.

    In WAL mode every page is written twice (to the WAL, then checkpointed into the file); pages a
    transaction adds at the end of the file need no rollback journal, so they are written once.
    Only when nothing else uses the file. SQLite refuses to leave WAL mode ("database is locked",
    at once, without waiting) while another connection has the file open. And while the seeding
    writes with a rollback journal, a new connection's `PRAGMA journal_mode=WAL` (every connection
    sets it) fails at once too: so a running server (its `server` row is live), which may connect
    at any moment, keeps the seeding in WAL mode as well.
    """
    if not empty or db.engine.dialect.name != "sqlite" or servers.newest_live() is not None:
        yield
        return
    db.engine.dispose()  # our own idle pooled connections would keep the file in WAL mode
    if not set_journal_mode("DELETE"):
        yield
        return
    try:
        yield
    finally:
        # Another process may have opened the file meanwhile; if it still holds it after the wait,
        # the file stays in rollback-journal mode until the next connection opens it (every
        # connection sets WAL, app/extensions.py).
        set_journal_mode("WAL", wait_seconds=WRITE_LOCK_WAIT_SECONDS)


def set_journal_mode(mode: str, wait_seconds: float = 0) -> bool:
    """Switch the SQLite file's journal mode; False when other connections kept it from switching
    (retried for `wait_seconds`: SQLite's busy timeout does not cover this)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            connection = db.engine.raw_connection()
            try:
                driver = connection.driver_connection
                assert driver is not None  # None only once the connection is closed
                result = driver.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]
            finally:
                connection.close()
            if result.lower() == mode.lower():
                return True
        except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:  # from connecting, or the PRAGMA
            if "locked" not in str(exc):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@contextmanager
def large_page_cache(connection: sa.Connection) -> Iterator[None]:
    """On SQLite, SQLITE_CACHE_KIB of page cache for the connection, then its own size again."""
    if connection.dialect.name != "sqlite":
        yield
        return
    size = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(size)}")


@contextmanager
def indexes_built_at_the_end(connection: sa.Connection, rebuild: bool) -> Iterator[None]:
    """On SQLite: the text search index filled once for the transaction's messages, and with
    `rebuild` (an empty inbox) the message table's secondary indexes dropped and built again at
    the end. All of it is DDL inside the transaction: a rollback puts every index back as it was."""
    if connection.dialect.name != "sqlite":
        yield
        return
    trigger = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (FTS_INSERT_TRIGGER,)
    ).scalar()
    indexes = [index for index in Message.__table__.indexes if not index.unique] if rebuild else []
    first_id = (connection.scalar(sa.select(sa.func.max(Message.id))) or 0) + 1
    for index in indexes:
        index.drop(connection)
    if trigger:
        connection.exec_driver_sql(f"DROP TRIGGER {FTS_INSERT_TRIGGER}")
    yield
    for index in indexes:
        index.create(connection)
    if trigger:
        connection.exec_driver_sql(
            f"INSERT INTO {FTS_TABLE} (rowid, folded_text) SELECT id, folded_text FROM message WHERE id >= ?",
            (first_id,),
        )
        connection.exec_driver_sql(trigger)


def messages_per_sender(messages: int, senders: int) -> list[int]:
    """Every sender at least one message; the rest shared by Zipf's law (rank r gets ~1/r)."""
    weights = [1 / rank for rank in range(1, senders + 1)]
    total = sum(weights)
    extra = messages - senders
    counts = [1 + int(extra * weight / total) for weight in weights]
    for rank in range(messages - sum(counts)):  # what rounding down left over
        counts[rank % senders] += 1
    return counts


def sender_numbers(senders: int, rng: random.Random) -> list[str]:
    """Distinct mobile numbers, mostly Estonian, some from neighbouring countries."""
    plans = rng.choices(NUMBER_PLANS, weights=NUMBER_PLAN_WEIGHTS, k=senders)
    # Distinct subscriber numbers keep the senders distinct whatever their plan.
    subscribers = rng.sample(range(10**6, 10**7), senders)
    return [f"{prefix}{subscriber:0{digits}d}" for (prefix, digits), subscriber in zip(plans, subscribers, strict=True)]


def text_pool(rng: random.Random, size: int = 500) -> list[tuple[str, str, str]]:
    """Message texts with their JSON encoding and search text, filled in from the templates."""
    pool = []
    for _ in range(size):
        text = rng.choice(TEMPLATES).format(n=rng.randrange(1000, 99999), h=rng.randrange(8, 20))
        pool.append((text, json.dumps(text, ensure_ascii=False), folding.fold(text)))
    return pool


def arrival_times(messages: int, now: datetime, rng: random.Random) -> Iterator[datetime]:
    """`messages` increasing times over the last DAYS days: fewer at night and at weekends."""
    start = now - timedelta(days=DAYS)
    first_hour = start.replace(minute=0, second=0, microsecond=0)
    hours = [first_hour + timedelta(hours=n) for n in range((now - first_hour) // timedelta(hours=1) + 1)]
    day_weights = {hour.date(): rng.uniform(0.7, 1.3) * (0.5 if hour.weekday() >= 5 else 1.0) for hour in hours}
    # Microseconds of each hour that are after `start` and already past: the first and last are cut.
    micro = timedelta(microseconds=1)
    firsts = [max(0, (start - hour) // micro) + 1 for hour in hours]
    ends = [min(3_600_000_000, (now - hour) // micro) for hour in hours]
    weights = [
        HOURLY_WEIGHTS[hour.hour] * day_weights[hour.date()] * max(0, end - first)
        for hour, first, end in zip(hours, firsts, ends, strict=True)
    ]
    total = sum(weights)
    # Cumulative rounding hands out exactly `messages` over the hours.
    handed_out, cumulative = 0, 0.0
    for hour, first, end, weight in zip(hours, firsts, ends, weights, strict=True):
        cumulative += weight
        count = round(messages * cumulative / total) - handed_out
        handed_out += count
        for offset in sorted(rng.randrange(first, end) for _ in range(count)):
            yield datetime(
                hour.year,
                hour.month,
                hour.day,
                hour.hour,
                offset // 60_000_000,
                offset // 1_000_000 % 60,
                offset % 1_000_000,
            )

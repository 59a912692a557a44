"""Demo data in bulk: realistic inbound messages for trying the inbox and for the benchmarks.

On SQLite, SQLite builds the message rows itself from two JSON arrays and two small tables
(`insert_in_sqlite`); on PostgreSQL they are built in Python and go in by COPY.
Conversation rows, the numbers each customer wrote to and the daily counts are counted in
Python while the messages are generated: a new sender's conversation is inserted with its final
counts, one already there is added to with ingest's own functions, so after every commit they
are exactly what ingesting the same messages one by one would give. Each message carries its
search text (`folding.fold`).

Into an empty inbox everything goes in one transaction, and on SQLite the message table's
secondary indexes and the text search index are built once at its end, from sorted data,
rather than entry by entry (building an index once is several times cheaper than keeping it
up to date row by row), the text search index gathered in memory and written out once. In
every transaction, the new conversations' number parts and text index are filled at its end
too, in one statement each, rather than by their triggers row by row (INSERT_TRIGGERS). A
server running meanwhile waits for the write lock until then; its callbacks answer 503 and the
provider retries them. Into an inbox in use, the messages go in
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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from app import clock, tallies
from app.callbacks import ingest
from app.callbacks.ingest import LOOKUPS_PER_STATEMENT, ConversationTotals, add_to_conversations, add_to_daily_counts
from app.db import folding
from app.db.folding import search_key
from app.db.models import NUMBER_PARTS_FROM, PREVIEW_LENGTH, Conversation, Message
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
# Memory a text search index gathers its entries in while it is built (fts_memory).
FTS_BUILD_BYTES = 256 * 1024 * 1024
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
PROVIDER_DELAYS = [timedelta(milliseconds=50 + 61 * n) for n in range(47)]  # (SQLITE_MESSAGES: the same)
UNIX_EPOCH, MICROSECOND = datetime(1970, 1, 1), timedelta(microseconds=1)
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
        """One transaction's messages (senders, increasing times, texts), with everything they change.

        A sender new to the inbox gets its conversation in one INSERT holding its final counts
        (what `add_to_conversations` would leave in an empty row): a row inserted and then updated
        costs twice its index entries. Conversations already there are added to as ingest does.
        """
        numbers, channels = self.numbers, self.channels
        next_id = (connection.scalar(sa.select(sa.func.max(Message.id))) or 0) + 1
        change = change_number()
        first_unread = bisect.bisect_left(times, self.unread_since)
        totals = self.totals(next_id, chunk, times, picks, first_unread)
        known = known_conversations(connection, [numbers[s] for s in totals])
        if new := sorted(s for s in totals if numbers[s] not in known):  # ids in the order of the senders
            connection.execute(
                sa.insert(Conversation.__table__),
                [
                    {
                        "sender": numbers[s],
                        "sender_key": search_key(numbers[s]),
                        "channel": totals[s].channel,
                        "last_message_id": totals[s].last_message_id,
                        "last_sent_at": totals[s].last_sent_at,
                        "last_text": totals[s].last_text,
                        "message_count": totals[s].message_count,
                        "unread_count": totals[s].unread_count,
                        "last_inbound_at": totals[s].last_inbound_at,
                        "change_seq": change,
                    }
                    for s in new
                ],
            )
            known.update(known_conversations(connection, [numbers[s] for s in new]))
        # What a row needs of its sender, looked up once per sender.
        who = {s: (numbers[s], channels[s], known[numbers[s]], RECIPIENTS[s % len(RECIPIENTS)]) for s in totals}
        if connection.dialect.name == "sqlite":
            self.insert_in_sqlite(connection, next_id, chunk, times, picks, who, change, progress)
        else:
            copy = message_copier(connection)

            def rows(start: int) -> list[tuple]:
                stop = start + ROWS_PER_INSERT
                return self.rows(next_id + start, chunk[start:stop], times[start:stop], picks[start:stop], who, change)

            # The next rows are built while the database stores these: it lets go of the GIL meanwhile.
            with ThreadPoolExecutor(1) as builder:
                upcoming = builder.submit(rows, 0)
                for start in range(0, len(chunk), ROWS_PER_INSERT):
                    batch = upcoming.result()
                    if start + ROWS_PER_INSERT < len(chunk):
                        upcoming = builder.submit(rows, start + ROWS_PER_INSERT)
                    copy(batch)
                    if progress:
                        progress(len(batch))
        if connection.dialect.name == "postgresql":
            # We chose the ids: move the id sequence past them for the next callback.
            connection.execute(
                sa.select(sa.func.setval(sa.func.pg_get_serial_sequence("message", "id"), next_id + len(chunk) - 1))
            )
        new_senders = set(new)
        self.report(connection, chunk, times, who, new_senders)
        if known_before := {who[s][2]: total for s, total in totals.items() if s not in new_senders}:
            add_to_conversations(connection, known_before, change)
        add_to_daily_counts(connection, dict(Counter(map(datetime.date, times))))
        ingest.add_recipients(
            connection, {(conversation_id, recipient) for _, _, conversation_id, recipient in who.values()}
        )

    def insert_in_sqlite(
        self,
        connection: sa.Connection,
        next_id: int,
        chunk: list[int],
        times: list[datetime],
        picks: list[int],
        who: dict[int, tuple[str, str, int, str]],
        change: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        """The messages built by SQLite itself (SQLITE_MESSAGES), ROWS_PER_INSERT at a time, from
        what varies: each one's sender and text as one number, and its time in microseconds, two
        JSON arrays. The senders and the texts are two small temporary tables. Python building
        each row and the driver binding its 13 values cost more CPU than the insert itself (about
        a sixth more for the whole seeding, docs/performance.md)."""
        driver = connection.connection.driver_connection
        assert driver is not None  # None only once the connection is closed
        texts = len(self.texts)
        for table in ("demo_sender", "demo_text", "demo_arrival"):
            driver.execute(f"DROP TABLE IF EXISTS temp.{table}")
        driver.execute(
            "CREATE TEMP TABLE demo_sender (s INTEGER PRIMARY KEY, conversation_id, sender, channel, recipient)"
        )
        driver.executemany(
            "INSERT INTO temp.demo_sender VALUES (?, ?, ?, ?, ?)",
            [
                (s, conversation_id, sender, channel, recipient)
                for s, (sender, channel, conversation_id, recipient) in who.items()
            ],
        )
        driver.execute("CREATE TEMP TABLE demo_text (pick INTEGER PRIMARY KEY, text, text_json, folded)")
        driver.executemany(
            "INSERT INTO temp.demo_text VALUES (?, ?, ?, ?)", [(n, *text) for n, text in enumerate(self.texts)]
        )
        driver.execute("CREATE TEMP TABLE demo_arrival (n INTEGER PRIMARY KEY, t INTEGER)")
        for start in range(0, len(chunk), ROWS_PER_INSERT):
            stop = start + ROWS_PER_INSERT
            driver.execute(
                "INSERT INTO temp.demo_arrival SELECT key, value FROM json_each(?)",
                (json.dumps([(moment - UNIX_EPOCH) // MICROSECOND for moment in times[start:stop]]),),
            )
            driver.execute(
                SQLITE_MESSAGES,
                {
                    "first": next_id + start,
                    "senders_and_texts": json.dumps(
                        [s * texts + pick for s, pick in zip(chunk[start:stop], picks[start:stop], strict=True)]
                    ),
                    "texts": texts,
                    "run": self.run,
                    "sub_msg_id_prefix": self.sub_msg_id_prefix,
                    "change": change,
                },
            )
            driver.execute("DELETE FROM temp.demo_arrival")
            if progress:
                progress(len(chunk[start:stop]))
        for table in ("demo_sender", "demo_text", "demo_arrival"):
            driver.execute(f"DROP TABLE temp.{table}")

    def report(
        self,
        connection: sa.Connection,
        chunk: list[int],
        times: list[datetime],
        who: dict[int, tuple[str, str, int, str]],
        new_senders: set[int],
    ) -> None:
        """What reports keep (app/tallies), as ingesting the messages would: the "in" tallies, and an
        opening (with its event) for each conversation this chunk starts (`new_senders`) or reopens
        (one marked done). Before the conversations already there move on (a done one is still done)."""
        firsts: dict[int, int] = {}
        for position, s in enumerate(chunk):
            if s not in firsts:
                firsts[s] = position
        ids = sorted(who[s][2] for s in firsts if s not in new_senders)
        done: set[int] = set()
        for start in range(0, len(ids), ingest.LOOKUPS_PER_STATEMENT):
            done.update(
                connection.scalars(
                    sa.select(Conversation.id).where(
                        Conversation.id.in_(ids[start : start + ingest.LOOKUPS_PER_STATEMENT]),
                        Conversation.status == "done",
                    )
                )
            )
        openings = []
        for s, position in firsts.items():
            _, channel, conversation_id, recipient = who[s]
            if s in new_senders or conversation_id in done:
                openings.append(
                    events.Opening(conversation_id, times[position], s not in new_senders, channel, recipient)
                )
        # The times increase: each quarter hour's messages are one stretch of the chunk, whose
        # senders' kinds (channel and our number, as a small number) are counted in C.
        pairs: dict[tuple[str, str], int] = {}
        kind = {s: pairs.setdefault((channel, recipient), len(pairs)) for s, (_, channel, _, recipient) in who.items()}
        kinds = list(pairs)
        arrivals: Counter[tuple[datetime, str, str]] = Counter()
        start = 0
        while start < len(chunk):
            bucket = tallies.bucket_of(times[start])
            stop = bisect.bisect_left(times, bucket + tallies.BUCKET, start)
            for each, count in Counter(map(kind.__getitem__, chunk[start:stop])).items():
                arrivals[(bucket, *kinds[each])] += count
            start = stop
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
    ) -> list[tuple]:
        """Message rows in MESSAGE_COLUMNS order, with the body the provider would have sent."""
        rows: list[tuple] = []
        append = rows.append
        delays, texts, run, sub_prefix = PROVIDER_DELAYS, self.texts, self.run, self.sub_msg_id_prefix
        for message_id, s, received_at, pick in zip(itertools.count(next_id), chunk, times, picks):
            sender, channel, conversation_id, recipient = who[s]
            text, text_json, folded = texts[pick]
            sent_at = received_at - delays[message_id % 47]
            msg_id = f"demo-{run}-{message_id:012d}"  # zero-padded: the unique index only appends
            sub_msg_id = f"{sub_prefix}{message_id:012x}"
            raw_body = (
                f'{{"msg_id": "{msg_id}", "sub_msg_id": "{sub_msg_id}", "channel": "{channel}", '
                f'"recipient": "{recipient}", "time": "{sent_at.isoformat(timespec="microseconds")}Z", '
                f'"text": {text_json}, "sender": "{sender}"}}'
            ).encode()
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
        self, next_id: int, chunk: list[int], times: list[datetime], picks: list[int], first_unread: int
    ) -> dict[int, ConversationTotals]:
        """What each sender's conversation gains from the chunk's messages (ids from next_id, in
        order), as ConversationTotals.add would sum them: counted in C, each sender's last message
        looked up once."""
        counts, unread = Counter(chunk), Counter(chunk[first_unread:])
        totals = {}
        for s, position in dict(zip(chunk, range(len(chunk)), strict=True)).items():  # each sender's last position
            message_id, received_at = next_id + position, times[position]
            totals[s] = ConversationTotals(
                self.channels[s],
                message_count=counts[s],
                unread_count=unread[s],
                last_message_id=message_id,
                last_sent_at=received_at - PROVIDER_DELAYS[message_id % len(PROVIDER_DELAYS)],
                last_text=self.texts[picks[position]][0][:PREVIEW_LENGTH],
                last_inbound_at=received_at,
            )
        return totals


def known_conversations(connection: sa.Connection, senders: list[str]) -> dict[str, int]:
    """The conversation id of each of these senders that has one."""
    found: dict[str, int] = {}
    lookup = sa.select(Conversation.sender, Conversation.id).where(
        Conversation.sender.in_(sa.bindparam("senders", expanding=True))
    )
    for start in range(0, len(senders), LOOKUPS_PER_STATEMENT):  # SQLite binds at most 32,766
        found.update(connection.execute(lookup, {"senders": senders[start : start + LOOKUPS_PER_STATEMENT]}).all())
    return found


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


def message_copier(connection: sa.Connection) -> Callable[[list[tuple]], None]:
    """A function storing message rows (values in MESSAGE_COLUMNS order) on PostgreSQL, by COPY."""
    driver = connection.connection.driver_connection
    assert driver is not None  # None only once the connection is closed
    copy_sql = f"COPY message ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN"

    def copy(rows: list[tuple]) -> None:
        with driver.cursor() as cursor, cursor.copy(copy_sql) as stream:
            for row in rows:
                stream.write_row(row)

    return copy


# On SQLite, a time as SQLAlchemy stores a DateTime ("2024-06-01 08:00:00.123456"), from microseconds.
_SQLITE_TIME = "strftime('%Y-%m-%d %H:%M:%S', {0} / 1000000, 'unixepoch') || printf('.%06d', {0} % 1000000)"
# The rows `Plan.rows` builds, built by SQLite from the arrays and tables of `insert_in_sqlite`: the
# provider's time a PROVIDER_DELAYS delay before ours, the body with the time as ISO 8601 with a Z.
# (OFFSET 0 keeps the inner query a query of its own: its times are formatted once per row.)
SQLITE_MESSAGES = f"""
INSERT INTO message ({", ".join(MESSAGE_COLUMNS)})
SELECT id, conversation_id, msg_id, sub_msg_id, channel, sender, recipient, text, folded, sent, received,
    CAST(printf('{{"msg_id": "%s", "sub_msg_id": "%s", "channel": "%s", "recipient": "%s", "time": "%sZ", '
                || '"text": %s, "sender": "%s"}}',
                msg_id, sub_msg_id, channel, recipient, replace(sent, ' ', 'T'), text_json, sender) AS BLOB),
    :change
FROM (
    SELECT :first + m.key AS id, w.conversation_id, w.channel, w.sender, w.recipient, x.text, x.text_json, x.folded,
        printf('demo-%s-%012d', :run, :first + m.key) AS msg_id,
        printf('%s%012x', :sub_msg_id_prefix, :first + m.key) AS sub_msg_id,
        {_SQLITE_TIME.format(f"(a.t - (50 + 61 * ((:first + m.key) % {len(PROVIDER_DELAYS)})) * 1000)")} AS sent,
        {_SQLITE_TIME.format("a.t")} AS received
    FROM json_each(:senders_and_texts) AS m
    CROSS JOIN temp.demo_arrival AS a ON a.n = m.key
    CROSS JOIN temp.demo_sender AS w ON w.s = m.value / :texts
    CROSS JOIN temp.demo_text AS x ON x.pick = m.value % :texts
    LIMIT -1 OFFSET 0
)
"""


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


@dataclass(frozen=True)
class InsertTrigger:
    """A SQLite trigger that files each new row of `table` elsewhere, and `fill`: the same for
    every row from id :first_id on, in one statement (into the FTS5 table `fts`, if any)."""

    name: str
    table: sa.Table
    fill: str
    fts: str | None = None


# Set aside while a transaction's rows go in, then filled once for all of them: the text search
# indexes (app/inbox/search.py) and the number parts (app/db/models.py, NUMBER_PART). Row by row,
# 10^5 new conversations cost their number parts' and text index's inserts one by one, an FTS5
# segment flushed and merged every MiB; at once, sorted, each page is written once.
INSERT_TRIGGERS = (
    InsertTrigger(
        "message_fts_insert",
        Message.__table__,
        "INSERT INTO message_fts (rowid, folded_text) SELECT id, folded_text FROM message WHERE id >= :first_id",
        "message_fts",
    ),
    InsertTrigger(
        "conversation_fts_insert",
        Conversation.__table__,
        "INSERT INTO conversation_fts (rowid, sender_key, contact_key) "
        "SELECT id, sender_key, contact_key FROM conversation WHERE id >= :first_id",
        "conversation_fts",
    ),
    InsertTrigger("conversation_number_part_insert", Conversation.__table__, NUMBER_PARTS_FROM),
)


@contextmanager
def indexes_built_at_the_end(connection: sa.Connection, rebuild: bool) -> Iterator[None]:
    """On SQLite: the text search indexes and the number parts filled once for the transaction's
    new messages and conversations (INSERT_TRIGGERS), and with `rebuild` (an empty inbox) the
    message table's secondary indexes dropped and built again at the end. All of it is DDL
    inside the transaction: a rollback puts every index and trigger back as it was. A trigger
    the file lacks (a table of its own, as the benchmark's ceiling makes) is left out."""
    if connection.dialect.name != "sqlite":
        yield
        return
    present: dict[str, str] = {
        name: sql
        for name, sql in connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    }
    triggers = [(trigger, present[trigger.name]) for trigger in INSERT_TRIGGERS if trigger.name in present]
    first_ids = {
        table.name: (connection.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1
        for table in {trigger.table for trigger, _ in triggers}
    }
    indexes = [index for index in Message.__table__.indexes if not index.unique] if rebuild else []
    for index in indexes:
        index.drop(connection)
    for trigger, _ in triggers:
        connection.exec_driver_sql(f"DROP TRIGGER {trigger.name}")
    yield
    for index in indexes:
        index.create(connection)
    for trigger, sql in triggers:
        with fts_memory(connection, trigger.fts, FTS_BUILD_BYTES) if trigger.fts else nullcontext():
            connection.execute(sa.text(trigger.fill), {"first_id": first_ids[trigger.table.name]})
        connection.exec_driver_sql(sql)


@contextmanager
def fts_memory(connection: sa.Connection, table: str, size: int) -> Iterator[None]:
    """An FTS5 table's `hashsize` (the index entries it gathers in memory before writing them out as
    a segment of the index) raised to `size` bytes, then put back.

    With FTS5's 1 MiB the text index of a million messages is written as hundreds of small segments
    that FTS5 then merges again and again; gathered in memory, it is written once, already merged
    (the index of 10^6 messages: one segment, in about half the time).
    """
    setting = f"SELECT v FROM {table}_config WHERE k = 'hashsize'"
    before = connection.exec_driver_sql(setting).scalar()
    change = f"INSERT INTO {table} ({table}, rank) VALUES ('hashsize', ?)"
    connection.exec_driver_sql(change, (size,))
    try:
        yield
    finally:
        if before is None:  # it had FTS5's default: the setting goes again
            connection.exec_driver_sql(f"DELETE FROM {table}_config WHERE k = 'hashsize'")
        else:
            connection.exec_driver_sql(change, (before,))


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
        # Below `end`: random() < 1, and its product with span - 1 rounds to span - 1 at most.
        span, draw = end - first - 1, rng.random
        for offset in sorted([first + int(draw() * span) for _ in range(count)]):
            yield hour + timedelta(microseconds=offset)

"""Demo data in bulk: realistic inbound messages for trying the inbox and for the benchmarks.

The rows go straight into the tables with large executemany INSERTs, a few transactions in
all, each holding the write lock. Conversation rows and daily counts are built in Python
while the messages are generated and merged into whatever the database already holds, so
after every commit they are exactly what ingesting the same messages one by one would give.
"""
import json
import random
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from .extensions import begin_write, db, upsert
from .ingest import search_key, utcnow
from .models import PREVIEW_LENGTH, Conversation, DailyCount, Message

# One transaction per this many messages: each commit leaves the inbox consistent, and a
# server receiving callbacks meanwhile never waits long for the write lock.
MESSAGES_PER_TRANSACTION = 200_000
ROWS_PER_INSERT = 10_000
DAYS = 60
# Unread: what arrived since the team last looked, about a day ago.
UNREAD_SINCE = timedelta(days=1)

CHANNEL_WEIGHTS = {"sms": 55, "whatsapp": 20, "viber": 15, "telegram": 10}
# Country code and mobile prefix, and how many subscriber digits follow.
NUMBER_PLANS = [("+3725", 7), ("+3725", 6), ("+3716", 7), ("+3706", 7), ("+35840", 7),
                ("+4479", 8), ("+79", 9)]
NUMBER_PLAN_WEIGHTS = [50, 10, 8, 8, 10, 6, 8]
RECIPIENTS = ["+37250000000", "+37250000001"]
# The provider's time is a moment before ours.
PROVIDER_DELAYS = [timedelta(milliseconds=50 + 61 * n) for n in range(47)]
# Untyped columns: values go to the driver as given (see `seed`).
MESSAGE_COLUMNS = sa.table("message", *(sa.column(column.name) for column in Message.__table__.c))
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
    ("Tere! Kirjutan pikemalt, sest eelmine kord jäi asi pooleli: tellimus {n} tuli kohale, aga "
     "karbis oli vale suurus ja ma sooviksin selle ümber vahetada. Kas saan selle tuua teie "
     "Tartu kauplusesse või peab saatma pakiautomaati? Ette tänades, Mari 🌷"),
]


@dataclass
class ConversationTotals:
    """What one sender's conversation row gains from a transaction's messages."""
    channel: str
    message_count: int = 0
    unread_count: int = 0
    last_message_id: int = 0
    last_sent_at: datetime | None = None
    last_text: str = ""


def seed(messages: int, senders: int, *, now: datetime | None = None, rng: random.Random | None = None,
         progress: Callable[[int], None] | None = None) -> None:
    """Add `messages` demo messages from `senders` new senders, in a few transactions.

    Skewed like real traffic: message counts per sender follow Zipf's law, so a few senders
    have thousands of messages and most have a handful. Times spread over the last 60 days,
    busier on weekdays and in daytime; ids follow arrival order, as ingest gives them.
    `progress` is called with the number of messages just inserted.
    """
    rng = rng or random.Random()
    now = now or utcnow()
    senders = max(1, min(senders, messages))
    numbers = sender_numbers(senders, rng)
    channels = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()), k=senders)
    # The sender of each message, in arrival order.
    order = [s for s, count in enumerate(messages_per_sender(messages, senders)) for _ in range(count)]
    rng.shuffle(order)
    arrivals = arrival_times(messages, now, rng)
    texts = text_pool(rng)
    run = secrets.token_hex(4)  # demo msg_ids are "demo-<run>-<id>": never a provider's UUID

    for first in range(0, messages, MESSAGES_PER_TRANSACTION):
        begin_write()
        connection = db.session.connection()
        next_id = (connection.scalar(sa.select(sa.func.max(Message.id))) or 0) + 1
        # Write the dialect's own value for a datetime ourselves: typed columns would convert
        # every value of every row in Python, which costs more than SQLite's own work.
        to_db = Message.__table__.c.sent_at.type.dialect_impl(connection.dialect).bind_processor(
            connection.dialect) or (lambda value: value)
        conversations: dict[str, ConversationTotals] = {}
        days: dict[date, int] = {}
        unread_since = now - UNREAD_SINCE
        rows = []
        chunk = order[first:first + MESSAGES_PER_TRANSACTION]
        for message_id, s, received_at in zip(itertools.count(next_id), chunk, arrivals):
            sender, channel = numbers[s], channels[s]
            text, text_json = rng.choice(texts)
            sent_at = received_at - PROVIDER_DELAYS[message_id % len(PROVIDER_DELAYS)]
            msg_id = f"demo-{run}-{message_id:012d}"
            sub_msg_id = uuid_text(rng)
            recipient = RECIPIENTS[message_id % len(RECIPIENTS)]
            # The body as the provider would have sent it.
            raw_body = (
                f'{{"msg_id": "{msg_id}", "sub_msg_id": "{sub_msg_id}", "channel": "{channel}", '
                f'"recipient": "{recipient}", "time": "{sent_at.isoformat()}Z", '
                f'"text": {text_json}, "sender": "{sender}"}}'
            ).encode()
            rows.append({
                "id": message_id, "msg_id": msg_id, "sub_msg_id": sub_msg_id, "channel": channel,
                "sender": sender, "recipient": recipient, "text": text, "sent_at": to_db(sent_at),
                "received_at": to_db(received_at), "raw_body": raw_body,
            })

            totals = conversations.get(sender)
            if totals is None:
                totals = conversations[sender] = ConversationTotals(channel)
            totals.message_count += 1
            totals.unread_count += received_at >= unread_since
            totals.last_message_id, totals.last_sent_at, totals.last_text = message_id, sent_at, text
            day = received_at.date()
            days[day] = days.get(day, 0) + 1

            if len(rows) == ROWS_PER_INSERT or message_id == next_id + len(chunk) - 1:
                connection.execute(sa.insert(MESSAGE_COLUMNS), rows)
                if progress:
                    progress(len(rows))
                rows = []
        if connection.dialect.name == "postgresql":
            # We chose the ids: move the id sequence past them for the next callback.
            connection.execute(sa.select(sa.func.setval(
                sa.func.pg_get_serial_sequence("message", "id"), next_id + len(chunk) - 1)))
        _merge_conversations(connection, conversations)
        _merge_daily_counts(connection, days)
        db.session.commit()


def _merge_conversations(connection: sa.Connection, conversations: dict[str, ConversationTotals]) -> None:
    table = Conversation.__table__
    insert = upsert(table)
    # Our ids are above every existing one, so the "last" fields are ours.
    insert = insert.on_conflict_do_update(index_elements=["sender"], set_={
        "channel": insert.excluded.channel,
        "last_message_id": insert.excluded.last_message_id,
        "last_sent_at": insert.excluded.last_sent_at,
        "last_text": insert.excluded.last_text,
        "message_count": table.c.message_count + insert.excluded.message_count,
        "unread_count": table.c.unread_count + insert.excluded.unread_count,
    })
    connection.execute(insert, [
        {"sender": sender, "sender_key": search_key(sender), "channel": totals.channel,
         "last_message_id": totals.last_message_id, "last_sent_at": totals.last_sent_at,
         "last_text": totals.last_text[:PREVIEW_LENGTH], "message_count": totals.message_count,
         "unread_count": totals.unread_count}
        for sender, totals in conversations.items()
    ])


def _merge_daily_counts(connection: sa.Connection, days: dict[date, int]) -> None:
    table = DailyCount.__table__
    insert = upsert(table)
    insert = insert.on_conflict_do_update(index_elements=["day"],
                                          set_={"count": table.c.count + insert.excluded.count})
    connection.execute(insert, [{"day": day, "count": count} for day, count in days.items()])


def uuid_text(rng: random.Random) -> str:
    """A random UUID-shaped string, several times cheaper than str(uuid.uuid4())."""
    hex_digits = f"{rng.getrandbits(128):032x}"
    return f"{hex_digits[:8]}-{hex_digits[8:12]}-4{hex_digits[13:16]}-{hex_digits[16:20]}-{hex_digits[20:]}"


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
    return [f"{prefix}{subscriber:0{digits}d}" for (prefix, digits), subscriber in zip(plans, subscribers)]


def text_pool(rng: random.Random, size: int = 500) -> list[tuple[str, str]]:
    """Message texts with their JSON encoding, filled in from the templates."""
    pool = []
    for _ in range(size):
        text = rng.choice(TEMPLATES).format(n=rng.randrange(1000, 99999), h=rng.randrange(8, 20))
        pool.append((text, json.dumps(text, ensure_ascii=False)))
    return pool


def arrival_times(messages: int, now: datetime, rng: random.Random):
    """`messages` increasing times over the last DAYS days: fewer at night and at weekends."""
    start = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)
    day_weights: dict[date, float] = {}
    hours = []
    moment = start
    while moment < now:
        if moment.date() not in day_weights:
            day_weights[moment.date()] = rng.uniform(0.7, 1.3) * (0.5 if moment.weekday() >= 5 else 1.0)
        hours.append((moment, min(3600.0, (now - moment).total_seconds()),
                      HOURLY_WEIGHTS[moment.hour] * day_weights[moment.date()]))
        moment += timedelta(hours=1)
    total = sum(weight * seconds for _, seconds, weight in hours)
    # Cumulative rounding hands out exactly `messages` over the hours.
    handed_out, cumulative = 0, 0.0
    for hour_start, seconds, weight in hours:
        cumulative += weight * seconds
        count = round(messages * cumulative / total) - handed_out
        handed_out += count
        for offset in sorted(rng.random() * seconds for _ in range(count)):
            yield hour_start + timedelta(seconds=offset)

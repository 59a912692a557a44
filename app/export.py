"""CSV export: formula-safe cells, streamed from a server-side cursor in constant memory."""
import csv
import io
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from .clock import utc_iso
from .extensions import db
from .models import Conversation, Message
from .queries import sender_matches

COLUMNS = ("time", "sender", "recipient", "channel", "text", "msg_id", "sub_msg_id", "received_at")
# Spreadsheets treat a cell starting with one of these as a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
PHONE_NUMBER = re.compile(r"\+\d+")
ROWS_PER_CHUNK = 500


def safe_cell(value: str | None) -> str:
    if not value:
        return ""
    if value.startswith(FORMULA_START) and not PHONE_NUMBER.fullmatch(value):
        return "'" + value
    return value


def export_query(q: str = "", conversation_id: int | None = None,
                 first_day: date | None = None, last_day: date | None = None) -> sa.Select:
    """Messages to export, in arrival order; days are UTC and inclusive, on the provider's time."""
    query = db.select(
        Message.sent_at, Message.sender, Message.recipient, Message.channel, Message.text,
        Message.msg_id, Message.sub_msg_id, Message.received_at,
    ).order_by(Message.id)
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    if q:
        query = query.where(Message.conversation_id.in_(db.select(Conversation.id).where(sender_matches(q))))
    if first_day:
        query = query.where(Message.sent_at >= datetime.combine(first_day, time.min))
    if last_day and last_day < date.max:  # the last day of year 9999 has no next day
        query = query.where(Message.sent_at < datetime.combine(last_day + timedelta(days=1), time.min))
    return query


def csv_chunks(query: sa.Select) -> Iterator[bytes]:
    """UTF-8 with a byte-order mark (so Excel reads emoji and Estonian), RFC 4180 quoting.

    Every cell is quoted, not only those holding a comma: a spreadsheet that splits on `;`, tab
    or `|` (Europe's default list separator is `;`) would otherwise cut `Hello;=1+1;bye` into
    cells and evaluate the middle one.

    One SELECT on one connection: the file is a consistent snapshot even while messages arrive.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(COLUMNS)
    with db.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_CHUNK).execute(query)
        for partition in result.partitions():
            for sent_at, sender, recipient, channel, text, msg_id, sub_msg_id, received_at in partition:
                writer.writerow((
                    utc_iso(sent_at, "microseconds"), safe_cell(sender), safe_cell(recipient), safe_cell(channel),
                    safe_cell(text), safe_cell(msg_id), safe_cell(sub_msg_id), utc_iso(received_at, "microseconds"),
                ))
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()

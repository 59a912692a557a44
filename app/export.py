"""CSV export: formula-safe cells, streamed from a server-side cursor in constant memory."""
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from .clock import utc_iso
from .extensions import db
from .models import Conversation, Message
from .queries import sender_matches

# Appended columns go last, so files read by column position keep working. For a reply, `status`
# is its delivery report (DELIVRD, ...) once there is one, else how far sending got (sent, failed,
# ...); for an inbound message "received". Never empty: LibreOffice, reading the file with `;`
# as the separator, pairs the quotes of a line that ends in an empty cell the wrong way and
# evaluates a formula inside a text (tests/test_export.py opens the file in Calc).
COLUMNS = ("time", "sender", "recipient", "channel", "text", "msg_id", "sub_msg_id", "received_at",
           "direction", "status")
# Spreadsheets treat a cell starting with one of these as a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
PHONE_NUMBER = re.compile(r"\+\d+")
ROWS_PER_CHUNK = 500
QUOTE = '"'


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
        Message.msg_id, Message.sub_msg_id, Message.received_at, Message.direction,
        sa.func.coalesce(Message.delivery, Message.status),
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
    lines = ["\ufeff" + csv_line(COLUMNS)]
    with db.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_CHUNK).execute(query)
        for partition in result.partitions():
            for (sent_at, sender, recipient, channel, text, msg_id, sub_msg_id, received_at, direction,
                 status) in partition:
                lines.append(csv_line((
                    utc_iso(sent_at, "microseconds"), safe_cell(sender), safe_cell(recipient), safe_cell(channel),
                    safe_cell(text), safe_cell(msg_id), safe_cell(sub_msg_id), utc_iso(received_at, "microseconds"),
                    direction, status or "received",
                )))
            yield "".join(lines).encode()
            lines = []
    yield "".join(lines).encode()


def csv_line(cells) -> str:
    """One RFC 4180 line, every cell quoted with its quotes doubled."""
    return ",".join(f'"{cell.replace(QUOTE, QUOTE * 2)}"' for cell in cells) + "\r\n"
"""Exports: CSV (formula-safe cells, streamed from a server-side cursor in constant memory) and
XLSX (text cells and real dates, built on disk in constant memory, then sent)."""
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from typing import IO

import sqlalchemy as sa
import xlsxwriter

from . import search
from .extensions import db
from .list_views import ListFilter
from .models import Conversation, Message, User
from .queries import conversation_matches

# The export's columns, in this order, in both formats (docs/search.md says what each holds). New
# columns take their place in this list and existing ones keep their names and values, so files
# read by column name keep working. `status`: for a reply its delivery report (DELIVRD, ...) once
# there is one, else how far sending got (sent, failed, ...); for an inbound message "received".
# `agent`: who wrote a reply; `problem`: why a reply failed, or its delivery error. `assignee` and
# `labels` are kept empty for now: the format is fixed before the features that fill them.
# The last column is never empty: LibreOffice, reading the file with `;` as the separator, pairs
# the quotes of a line that ends in an empty cell the wrong way and evaluates a formula inside a
# text (tests/test_export.py opens the file in Calc).
COLUMNS = ("time", "sender", "recipient", "channel", "text", "msg_id", "sub_msg_id", "received_at",
           "direction", "status", "contact_name", "agent", "assignee", "labels", "problem", "conversation_id")
TIME_COLUMNS = ("time", "received_at")
# Cells the app writes itself from a few known words or digits: no formula rule needed.
PLAIN_COLUMNS = ("direction", "status", "conversation_id")
# Spreadsheets treat a cell starting with one of these as a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
PHONE_NUMBER = re.compile(r"\+[0-9]+")  # ASCII digits, as the SQL below tests
ROWS_PER_CHUNK = 500
QUOTE = '"'


def safe_cell(value: str | None) -> str:
    if not value:
        return ""
    if value.startswith(FORMULA_START) and not PHONE_NUMBER.fullmatch(value):
        return "'" + value
    return value


def export_query(q: str = "", conversation_id: int | None = None,
                 first_day: date | None = None, last_day: date | None = None,
                 list_filter: ListFilter | None = None, text: str = "") -> sa.Select:
    """Messages to export, in arrival order; days are UTC and inclusive, on the provider's time.

    `q` keeps the conversations search finds by number or name; `list_filter` those of a view
    (Open, Done, ...) and its channel and number filters; `text` the messages whose text holds it
    (as text search finds them).
    """
    # The name and the author by their primary keys, per row: a join could make the database read
    # conversations first and then sort every message.
    contact_name = (sa.select(Conversation.contact_name).where(Conversation.id == Message.conversation_id)
                    .scalar_subquery())
    agent = sa.select(User.username).where(User.id == Message.author_id).scalar_subquery()
    status = sa.func.coalesce(sa.func.nullif(Message.delivery, ""), sa.func.nullif(Message.status, ""),
                              sa.literal("received", sa.String))  # inbound messages have neither
    not_yet = sa.cast(sa.null(), sa.String)  # assignee, labels: empty until their features exist
    query = db.select(
        Message.sent_at, Message.sender, Message.recipient, Message.channel, Message.text,
        Message.msg_id, Message.sub_msg_id, Message.received_at, Message.direction,
        status, contact_name, agent, not_yet, not_yet, Message.problem,
        sa.cast(Message.conversation_id, sa.String),
    ).order_by(Message.id)
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    conversations = ([conversation_matches(q)] if q else []) + (list_filter.conditions() if list_filter else [])
    if conversations:
        query = query.where(Message.conversation_id.in_(db.select(Conversation.id).where(*conversations)))
    if text:
        query = query.where(search.text_matches(text, db.session.get_bind().dialect.name))
    if first_day:
        query = query.where(Message.sent_at >= datetime.combine(first_day, time.min))
    if last_day and last_day < date.max:  # the last day of year 9999 has no next day
        query = query.where(Message.sent_at < datetime.combine(last_day + timedelta(days=1), time.min))
    return query


def csv_chunks(query: sa.Select, on_chunk: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """UTF-8 with a byte-order mark (so Excel reads emoji and Estonian), RFC 4180 quoting.

    Every cell is quoted, not only those holding a comma: a spreadsheet that splits on `;`, tab
    or `|` (Europe's default list separator is `;`) would otherwise cut `Hello;=1+1;bye` into
    cells and evaluate the middle one.

    The database builds each line (`csv_line_sql`: the quoting, the formula rule and the times),
    so Python only joins lines. One SELECT on one connection: the file is a consistent snapshot
    even while messages arrive. `on_chunk` is called after each chunk of rows (the export's lease
    is renewed there).
    """
    yield ("\ufeff" + csv_line(COLUMNS)).encode()
    with db.engine.connect() as connection:
        lines = query.with_only_columns(csv_line_sql(query.selected_columns, connection.dialect.name),
                                        maintain_column_froms=True)
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_CHUNK).execute(lines)
        for partition in result.scalars().partitions():
            yield "".join(partition).encode()
            on_chunk()


def csv_line(cells) -> str:
    """One RFC 4180 line, every cell quoted with its quotes doubled."""
    return ",".join(f'"{cell.replace(QUOTE, QUOTE * 2)}"' for cell in cells) + "\r\n"


def csv_line_sql(columns, dialect: str) -> sa.ColumnElement[str]:
    """`csv_line` in SQL, with its CRLF, over export_query's columns: the same bytes on either
    database as `csv_line` of what `safe_cell` and `utc_iso(..., "microseconds")` give.

    One printf (SQLite) or format (PostgreSQL) builds the line: a chain of `||` copies it each time.
    """
    # A time has no quotes to double. SQLite holds SQLAlchemy's "2024-06-01 08:00:00.123456":
    # its first 10 characters, T, the rest, Z; PostgreSQL formats its timestamp.
    if dialect == "sqlite":
        time, times = "%.10sT%sZ", lambda t: [t, sa.func.substr(sa.type_coerce(t, sa.String), 12)]
        function, crlf = sa.func.printf, "char(13, 10)"
    else:
        time, times = "%s", lambda t: [sa.func.to_char(t, _sql("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""))]
        function, crlf = sa.func.format, "chr(13) || chr(10)"
    formats, arguments = [], []
    for name, column in zip(COLUMNS, columns, strict=True):
        if name in TIME_COLUMNS:
            formats.append(time)
            arguments += times(column)
        else:
            formats.append("%s")
            arguments.append(_cell_sql(column, dialect, safe=name not in PLAIN_COLUMNS))
    line = '"' + '","'.join(formats) + '"'
    return sa.type_coerce(function(_sql(f"'{line}' || {crlf}"), *arguments), sa.String)


def _sql(text: str) -> sa.ColumnElement[str]:
    return sa.literal_column(text, sa.String)


def _cell_sql(column, dialect: str, safe: bool = True) -> sa.ColumnElement[str]:
    """A cell's text with its quotes doubled; with `safe`, the `'` that `safe_cell` adds."""
    value = sa.type_coerce(column, sa.String)
    doubled = sa.func.replace(value, _sql("""'"'"""), _sql("""'""'"""))
    whens = []
    if safe:
        formula = sa.and_(_formula_start(value, dialect), sa.not_(_phone_number(value, dialect)))
        whens.append((formula, sa.type_coerce(_sql("''''").op("||")(doubled), sa.String)))
    has_quote = (sa.func.instr if dialect == "sqlite" else sa.func.strpos)(value, _sql("""'"'""")) > 0
    whens.append((has_quote, doubled))
    return sa.case(*whens, else_=sa.func.coalesce(value, _sql("''")))


def _formula_start(value, dialect: str) -> sa.ColumnElement[bool]:
    """FORMULA_START: on SQLite by code point. A cell starting with NUL, whose code point SQLite's
    text functions can't see (they stop at a NUL), sorts below char(1). PostgreSQL holds no NUL."""
    if dialect == "sqlite":
        return sa.or_(sa.func.unicode(value).bool_op("IN")(_sql("(61, 43, 45, 64, 9, 13, 10)")),
                      sa.and_(value < _sql("char(1)"), value != _sql("''")))
    return sa.func.substr(value, 1, 1).bool_op("IN")(_sql("('=', '+', '-', '@', chr(9), chr(13), chr(10))"))


def _phone_number(value, dialect: str) -> sa.ColumnElement[bool]:
    """PHONE_NUMBER: a + and ASCII digits only."""
    if dialect == "sqlite":
        return sa.and_(value.bool_op("GLOB")(_sql("'+[0-9]*'")), sa.not_(value.bool_op("GLOB")(_sql("'+*[^0-9]*'"))))
    return value.bool_op("~")(_sql("'^[+][0-9]+$'"))


# --- XLSX ---------------------------------------------------------------------------------

# A worksheet holds 1,048,576 rows: the header and this many messages; the rest go on to the next.
XLSX_ROWS_PER_SHEET = 1_048_575
# Excel's dates start at 1900: a time before the dates a spreadsheet can show is written as its ISO
# text instead. (Excel counts a 29 February 1900 that never was: the dates start after it.)
XLSX_FIRST_DAY = datetime(1900, 3, 1)
XLSX_TEXT_WIDTHS = {"time": 22, "received_at": 22, "text": 60, "msg_id": 38, "sub_msg_id": 38}
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Messages per second xlsx_file writes on one free core (about 17,000 measured, docs/search.md),
# a little less: what the export dialog's estimate of the wait is based on.
XLSX_ROWS_PER_SECOND = 15_000


def xlsx_file(query: sa.Select, output: IO[bytes], rows_per_sheet: int = XLSX_ROWS_PER_SHEET,
              on_chunk: Callable[[], None] = lambda: None) -> int:
    """Write the query's rows (export_query's columns) as an .xlsx workbook into `output`; the
    number of messages written.

    Every text is a text cell (`write_string`): `+37255512345` keeps its `+`, `=1+1` is shown as
    typed, and nothing becomes a formula or a link. Times are date cells (UTC). The header row is
    frozen and filtered. xlsxwriter's constant_memory mode writes each row to a temporary file as
    it goes, so memory stays flat however many rows; the workbook is zipped into `output` at the
    end. One SELECT on one connection: a consistent snapshot, as for CSV. A cell holds at most
    32,767 characters (Excel's limit): a longer text is cut there (the CSV has it whole).
    `on_chunk` is called every ROWS_PER_CHUNK rows (the export's lease is renewed there).
    """
    workbook = xlsxwriter.Workbook(output, {
        "constant_memory": True,
        "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
    })
    time_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    header_format = workbook.add_format({"bold": True})
    times = {COLUMNS.index(name) for name in TIME_COLUMNS}
    sheet, row, written = None, rows_per_sheet, 0
    with db.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_CHUNK).execute(query)
        for values in result:
            if row == rows_per_sheet:  # the sheet is full (or there is none yet): start the next
                _filter_rows(sheet, row)
                sheet = _xlsx_sheet(workbook, header_format, time_format)
                row = 0
            row += 1
            written += 1
            if written % ROWS_PER_CHUNK == 0:
                on_chunk()
            for column, value in enumerate(values):
                if value is None:
                    continue
                if column in times and isinstance(value, datetime) and value >= XLSX_FIRST_DAY:
                    sheet.write_datetime(row, column, value, time_format)
                elif column in times:
                    sheet.write_string(row, column, value.isoformat(timespec="microseconds") + "Z")
                else:
                    sheet.write_string(row, column, value if isinstance(value, str) else str(value))
    if sheet is None:
        sheet, row = _xlsx_sheet(workbook, header_format, time_format), 0
    _filter_rows(sheet, row)
    workbook.close()
    return written


def _xlsx_sheet(workbook, header_format, time_format):
    number = len(workbook.worksheets()) + 1
    sheet = workbook.add_worksheet("Messages" if number == 1 else f"Messages {number}")
    for column, name in enumerate(COLUMNS):
        sheet.set_column(column, column, XLSX_TEXT_WIDTHS.get(name, 16),
                         time_format if name in TIME_COLUMNS else None)
        sheet.write_string(0, column, name, header_format)
    sheet.freeze_panes(1, 0)
    return sheet


def _filter_rows(sheet, last_row: int) -> None:
    """The header's filter buttons, over the sheet's rows (kept by xlsxwriter until it closes)."""
    if sheet is not None:
        sheet.autofilter(0, 0, last_row, len(COLUMNS) - 1)


def xlsx_seconds(messages: int) -> int:
    """About how long building an XLSX of this many messages takes here (docs/search.md)."""
    return round(messages / XLSX_ROWS_PER_SECOND)


def count_messages(query: sa.Select) -> int:
    """How many messages an export will hold (what the export dialog says)."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(
        query.with_only_columns(Message.id, maintain_column_froms=True).order_by(None).subquery()))

"""Exports: CSV (formula-safe cells, streamed from a server-side cursor in constant memory) and
XLSX (text cells and real dates, written as XML into a zip on disk in constant memory, then sent)."""

import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import IO

import sqlalchemy as sa

from app.db.models import ApiToken, Conversation, Message, User
from app.extensions import db
from app.inbox import search
from app.inbox.list_views import ListFilter
from app.inbox.queries import conversation_matches

# The export's columns, in this order, in both formats (docs/search.md says what each holds). New
# columns take their place in this list and existing ones keep their names and values, so files
# read by column name keep working. `status`: for a reply its delivery report (DELIVRD, ...) once
# there is one, else how far sending got (sent, failed, ...); for an inbound message "received"; for
# a team's note (direction "note", channel "note") empty. `agent`: who wrote a reply or a note;
# `assignee`: who owns the conversation now (empty: unassigned); `problem`: why a reply failed, or
# its delivery error. `labels`: the conversation's labels now, their names sorted (case aside) and
# joined by ", " (a label's name holds no comma), as conversation.label_names keeps them.
# `price`: what a reply cost, in the account's currency (the setting on the admin's time zone
# page), as a plain decimal (0.2, 0.0456), from its delivery reports; `parts`: its parts (SMS
# segments); both empty until a report priced it, and for messages that are not replies. In the
# XLSX both are number cells.
# The last column is never empty: LibreOffice, reading the file with `;` as the separator, pairs
# the quotes of a line that ends in an empty cell the wrong way and evaluates a formula inside a
# text (tests/test_export.py opens the file in Calc).
COLUMNS = (
    "time",
    "sender",
    "recipient",
    "channel",
    "text",
    "msg_id",
    "sub_msg_id",
    "received_at",
    "direction",
    "status",
    "contact_name",
    "agent",
    "assignee",
    "labels",
    "problem",
    "price",
    "parts",
    "conversation_id",
)
TIME_COLUMNS = ("time", "received_at")
NUMBER_COLUMNS = ("price", "parts")  # number cells in the XLSX
# Cells the app writes itself from a few known words or digits: no formula rule needed.
PLAIN_COLUMNS = ("direction", "status", "price", "parts", "conversation_id")
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


def export_query(
    q: str = "",
    conversation_id: int | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    list_filter: ListFilter | None = None,
    text: str = "",
    dialect: str | None = None,
) -> sa.Select:
    """Messages to export, in arrival order; days are UTC and inclusive, on the provider's time.

    `q` keeps the conversations search finds by number or name; `list_filter` those of a view
    (Open, Done, ...) and its channel and number filters; `text` the messages whose text holds it
    (as text search finds them). `dialect`: the SQL's, when not the app's database's.
    """
    # The name and the author by their primary keys, per row: a join could make the database read
    # conversations first and then sort every message.
    contact_name = (
        sa.select(Conversation.contact_name).where(Conversation.id == Message.conversation_id).scalar_subquery()
    )
    agent = sa.case(
        (Message.via == "away", sa.literal("Away reply", sa.String)),  # app/hours' automatic reply
        # A reply sent through the API: its token, "API: <name>".
        (
            Message.api_token_id.is_not(None),
            sa.select(sa.literal("API: ", sa.String) + ApiToken.name)
            .where(ApiToken.id == Message.api_token_id)
            .scalar_subquery(),
        ),
        else_=sa.select(User.username).where(User.id == Message.author_id).scalar_subquery(),
    )
    assignee = (
        sa.select(User.username)
        .join(Conversation, Conversation.assignee_id == User.id)
        .where(Conversation.id == Message.conversation_id)
        .scalar_subquery()
    )
    sending = sa.func.coalesce(
        sa.func.nullif(Message.delivery, ""), sa.func.nullif(Message.status, ""), sa.literal("received", sa.String)
    )  # inbound messages have neither
    status = sa.case((Message.direction == "note", sa.literal("", sa.String)), else_=sending)  # a note: none
    labels = sa.select(Conversation.label_names).where(Conversation.id == Message.conversation_id).scalar_subquery()
    dialect = dialect or db.session.get_bind().dialect.name
    query = db.select(
        Message.sent_at,
        Message.sender,
        Message.recipient,
        Message.channel,
        Message.text,
        Message.msg_id,
        Message.sub_msg_id,
        Message.received_at,
        Message.direction,
        status,
        contact_name,
        agent,
        assignee,
        labels,
        Message.problem,
        price_text_sql(Message.price, dialect),
        sa.cast(Message.parts, sa.String),
        sa.cast(Message.conversation_id, sa.String),
    ).order_by(Message.id)
    if conversation_id is not None:
        query = query.where(Message.conversation_id == conversation_id)
    conversations = ([conversation_matches(q)] if q else []) + (list_filter.conditions() if list_filter else [])
    if conversations:
        query = query.where(Message.conversation_id.in_(db.select(Conversation.id).where(*conversations)))
    if text:
        query = query.where(search.text_matches(text, dialect))
    if first_day:
        query = query.where(Message.sent_at >= datetime.combine(first_day, time.min))
    if last_day and last_day < date.max:  # the last day of year 9999 has no next day
        query = query.where(Message.sent_at < datetime.combine(last_day + timedelta(days=1), time.min))
    return query


def price_text_sql(price, dialect: str) -> sa.ColumnElement[str]:
    """currency.price_text in SQL: six decimals (SQLite holds a REAL, PostgreSQL's numeric(14, 6)
    writes six), trailing zeros and point dropped; NULL stays NULL."""
    six = sa.func.printf(_sql("'%.6f'"), price) if dialect == "sqlite" else sa.cast(price, sa.String)
    trimmed = sa.func.rtrim(sa.func.rtrim(six, _sql("'0'")), _sql("'.'"))
    return sa.case((price.is_(None), sa.null()), else_=trimmed)


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
        lines = query.with_only_columns(
            csv_line_sql(query.selected_columns, connection.dialect.name), maintain_column_froms=True
        )
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
            arguments.append(_once_per_row(column, partial(_cell_sql, dialect=dialect, safe=name not in PLAIN_COLUMNS)))
    line = '"' + '","'.join(formats) + '"'
    return sa.type_coerce(function(_sql(f"'{line}' || {crlf}"), *arguments), sa.String)


def _once_per_row(column, cell: Callable) -> sa.ColumnElement[str]:
    """`cell(column)`, with a scalar subquery's cell built inside the subquery (in each branch of
    a CASE choosing between them): `cell` refers to its value up to eight times (the formula
    rule, the quotes), and a correlated subquery is run again for each reference; inside, they
    are references to a column of the row it found, and the subquery runs once per line."""
    if isinstance(column, sa.ScalarSelect) and isinstance(column.element, sa.Select):
        inner = column.element
        (value,) = inner.selected_columns
        built = inner.with_only_columns(cell(value), maintain_column_froms=True).scalar_subquery()
        return sa.func.coalesce(built, _sql("''"))  # no row: an empty cell, as cell(NULL) gives
    if isinstance(column, sa.Case) and column.value is None:
        return sa.case(
            *[(condition, _once_per_row(result, cell)) for condition, result in column.whens],
            else_=None if column.else_ is None else _once_per_row(column.else_, cell),
        )
    return cell(column)


def _sql(text: str) -> sa.ColumnElement[str]:
    return sa.literal_column(text, sa.String)


def _cell_sql(column, dialect: str, safe: bool = True) -> sa.ColumnElement[str]:
    """A cell's text with its quotes doubled; with `safe`, the `'` that `safe_cell` adds."""
    value = sa.type_coerce(column, sa.String)
    doubled = sa.func.replace(value, _sql("""'"'"""), _sql("""'""'"""))
    whens: list[tuple[sa.ColumnElement[bool], sa.ColumnElement[str]]] = []
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
        return sa.or_(
            sa.func.unicode(value).bool_op("IN")(_sql("(61, 43, 45, 64, 9, 13, 10)")),
            sa.and_(value < _sql("char(1)"), value != _sql("''")),
        )
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
XLSX_EPOCH = datetime(1899, 12, 30)  # day 0 of a spreadsheet's dates, as counted from 1 March 1900
XLSX_TEXT_WIDTHS = {"time": 22, "received_at": 22, "text": 60, "msg_id": 38, "sub_msg_id": 38}
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_CELL_LIMIT = 32_767  # characters in a cell (Excel's limit)
# Messages per CPU second xlsx_file writes (about 30,000 measured on a loaded machine,
# docs/search.md): what the export dialog's estimate of the wait is based on.
XLSX_ROWS_PER_SECOND = 30_000
# Characters XML 1.0 cannot carry (and the carriage return, which XML readers turn into a line
# feed): a spreadsheet reads `_xHHHH_` as the character; a `_xHHHH_` in a text is itself escaped.
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
_XML_SPECIAL = re.compile(r"[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_DATE_STYLE, _HEADER_STYLE = 1, 2  # cellXfs in _STYLES


def xlsx_file(
    query: sa.Select,
    output: IO[bytes],
    rows_per_sheet: int = XLSX_ROWS_PER_SHEET,
    on_chunk: Callable[[], None] = lambda: None,
    columns: Sequence[str] = COLUMNS,
    time_columns: Sequence[str] = TIME_COLUMNS,
    sheet_name: str = "Messages",
) -> int:
    """Write the query's rows (export_query's columns) as an .xlsx workbook into `output`; the
    number of messages written.

    Every text is an inline text cell: `+37255512345` keeps its `+`, `=1+1` is shown as typed,
    and nothing becomes a formula, a number or a link. Times are date cells (UTC); a reply's price
    and parts number cells (the digits the database wrote). The header row
    is frozen and filtered. Each row's XML is written as one string straight into the zip as it
    goes (a workbook is a zip of XML parts), so memory stays flat however many rows; cell by cell
    through a general library cost three times the CPU. One SELECT on one connection: a
    consistent snapshot, as for CSV. A cell holds at most 32,767 characters (Excel's limit): a
    longer text is cut there (the CSV has it whole). `on_chunk` is called every ROWS_PER_CHUNK
    rows (the export's lease is renewed there).
    """
    times = [columns.index(name) for name in time_columns]
    numbers = [columns.index(name) for name in NUMBER_COLUMNS if name in columns]
    letters = [_column_letter(column) for column in range(len(columns))]
    sheets: list[tuple[str, int]] = []  # each sheet's name and its last row
    sheet, row, written = None, rows_per_sheet, 0
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as package, db.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_CHUNK).execute(query)
        for chunk in result.partitions():
            lines: list[str] = []
            for values in chunk:
                if row == rows_per_sheet:  # the sheet is full (or there is none yet): start the next
                    if sheet is not None:
                        sheet.write("".join(lines).encode())
                        lines = []
                        _end_sheet(sheet, row, len(columns))
                        sheets[-1] = (sheets[-1][0], row)
                    sheets.append((sheet_name if not sheets else f"{sheet_name} {len(sheets) + 1}", 0))
                    sheet = _start_sheet(package, len(sheets), letters, columns, time_columns)
                    row = 0
                row += 1
                cells = []
                for column, value in enumerate(values):
                    if value is None:
                        continue
                    if column in numbers:
                        cells.append(f'<c r="{letters[column]}{row + 1}"><v>{value}</v></c>')
                        continue
                    if column in times and isinstance(value, datetime):
                        if value >= XLSX_FIRST_DAY:
                            days = (value - XLSX_EPOCH) / timedelta(days=1)
                            cells.append(f'<c r="{letters[column]}{row + 1}" s="{_DATE_STYLE}"><v>{days:.16G}</v></c>')
                            continue
                        value = value.isoformat(timespec="microseconds") + "Z"
                    cells.append(
                        _text_cell(f"{letters[column]}{row + 1}", value if isinstance(value, str) else str(value))
                    )
                lines.append(f'<row r="{row + 1}">{"".join(cells)}</row>')
            written += len(chunk)
            assert sheet is not None  # the chunk's first row started one, if there was none
            sheet.write("".join(lines).encode())
            on_chunk()
        if sheet is None:
            sheets.append((sheet_name, 0))
            sheet, row = _start_sheet(package, 1, letters, columns, time_columns), 0
        _end_sheet(sheet, row, len(columns))
        sheets[-1] = (sheets[-1][0], row)
        _write_workbook(package, sheets, len(columns))
    return written


def _text_cell(reference: str, text: str, style: int = 0) -> str:
    if len(text) > XLSX_CELL_LIMIT:
        text = text[:XLSX_CELL_LIMIT]
    if _XML_SPECIAL.search(text):
        text = _XML_UNSAFE.sub(_xml_escape_one, text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    styled = f' s="{style}"' if style else ""
    return f'<c r="{reference}"{styled} t="inlineStr"><is><t{space}>{text}</t></is></c>'


def _xml_escape_one(match: re.Match) -> str:
    found = match.group(0)
    return "_x005F" + found if found.startswith("_x") else f"_x{ord(found):04X}_"


def _column_letter(column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, remainder = divmod(column - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _start_sheet(
    package: zipfile.ZipFile,
    number: int,
    letters: list[str],
    columns: Sequence[str] = COLUMNS,
    time_columns: Sequence[str] = TIME_COLUMNS,
) -> IO[bytes]:
    """A worksheet's XML up to its rows: the frozen header row, the column widths, the header."""
    # No Zip64 records (not every spreadsheet app reads them), as xlsxwriter wrote none: a sheet's XML
    # must stay under 2 GiB (a full sheet of 1,048,575 messages averaging under 2,000 bytes each).
    sheet = package.open(f"xl/worksheets/sheet{number}.xml", "w")
    date_style = f' style="{_DATE_STYLE}"'
    widths = "".join(
        f'<col min="{column + 1}" max="{column + 1}" width="{XLSX_TEXT_WIDTHS.get(name, 16) + 0.7109375}"'
        f'{date_style if name in time_columns else ""} customWidth="1"/>'
        for column, name in enumerate(columns)
    )
    selected = ' tabSelected="1"' if number == 1 else ""
    header = "".join(_text_cell(f"{letters[column]}1", name, _HEADER_STYLE) for column, name in enumerate(columns))
    sheet.write(
        (
            f'{_XML_HEAD}<worksheet xmlns="{_MAIN}" xmlns:r="{_RELATIONSHIPS}">'
            f'<sheetViews><sheetView{selected} workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{widths}</cols>'
            f'<sheetData><row r="1">{header}</row>'
        ).encode()
    )
    return sheet


def _end_sheet(sheet: IO[bytes], last_row: int, width: int = len(COLUMNS)) -> None:
    """The rows' end and the header's filter buttons over them."""
    sheet.write(
        (
            f'</sheetData><autoFilter ref="A1:{_column_letter(width - 1)}{last_row + 1}"/>'
            '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
            "</worksheet>"
        ).encode()
    )
    sheet.close()


_STYLES = (
    f'{_XML_HEAD}<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd\\ hh:mm:ss"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)


def _write_workbook(package: zipfile.ZipFile, sheets: list[tuple[str, int]], width: int = len(COLUMNS)) -> None:
    """The parts around the worksheets: the workbook and its sheets' names, styles, relationships."""
    sheet_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
    package.writestr(
        "[Content_Types].xml",
        (
            f'{_XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            + "".join(
                f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{sheet_type}"/>'
                for n in range(1, len(sheets) + 1)
            )
            + "</Types>"
        ),
    )
    package.writestr(
        "_rels/.rels",
        (
            f'{_XML_HEAD}<Relationships xmlns="{_PACKAGE}"><Relationship Id="rId1" '
            f'Type="{_RELATIONSHIPS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
    )
    package.writestr(
        "xl/_rels/workbook.xml.rels",
        (
            f'{_XML_HEAD}<Relationships xmlns="{_PACKAGE}">'
            + "".join(
                f'<Relationship Id="rId{n}" Type="{_RELATIONSHIPS}/worksheet" Target="worksheets/sheet{n}.xml"/>'
                for n in range(1, len(sheets) + 1)
            )
            + f'<Relationship Id="rId{len(sheets) + 1}" Type="{_RELATIONSHIPS}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
    )
    package.writestr("xl/styles.xml", _STYLES)
    package.writestr(
        "xl/workbook.xml",
        (
            f'{_XML_HEAD}<workbook xmlns="{_MAIN}" xmlns:r="{_RELATIONSHIPS}">'
            "<bookViews><workbookView/></bookViews><sheets>"
            + "".join(f'<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>' for n, (name, _) in enumerate(sheets, 1))
            + "</sheets><definedNames>"
            + "".join(
                f'<definedName name="_xlnm._FilterDatabase" localSheetId="{n}" hidden="1">'
                f"'{name}'!$A$1:${_column_letter(width - 1)}${last_row + 1}</definedName>"
                for n, (name, last_row) in enumerate(sheets)
            )
            + "</definedNames></workbook>"
        ),
    )


def xlsx_seconds(messages: int) -> int:
    """About how long building an XLSX of this many messages takes here (docs/search.md)."""
    return round(messages / XLSX_ROWS_PER_SECOND)


def count_messages(query: sa.Select) -> int:
    """How many messages an export will hold (what the export dialog says)."""
    return (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(
                query.with_only_columns(Message.id, maintain_column_froms=True).order_by(None).subquery()
            )
        )
        or 0
    )

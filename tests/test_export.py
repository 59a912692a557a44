"""CSV export: columns, encoding, quoting, formula safety, filters, streaming, a real spreadsheet."""

import csv
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app import clock
from app.export import safe_cell
from conftest import IN_CI, ONE_DATABASE, body_for, conversation_of

HEADER = [
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
]


@pytest.fixture
def export(client, auth, deliver):
    auth.login()

    def export(query: str = "") -> list[list[str]]:
        with client.get("/export.csv" + query) as response:
            assert response.status_code == 200
            data = response.data
        assert data.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8 right
        return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))

    return export


def test_columns_times_and_unicode(app, export, deliver):
    deliver(
        body_for(
            msg_id="m1",
            sub_msg_id="s1",
            sender="+3725550001",
            recipient="+37250000000",
            channel="whatsapp",
            time="2024-06-01T08:00:00.123456Z",
            text='Tere, "sõber"! 😀\nrida 2',
        )
    )
    header, row = export()
    assert header == HEADER
    assert row[:7] == [
        "2024-06-01T08:00:00.123456Z",
        "+3725550001",
        "+37250000000",
        "whatsapp",
        'Tere, "sõber"! 😀\nrida 2',
        "m1",
        "s1",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[7])
    assert row[8:17] == ["in", "received", "", "", "", "", "", "", ""]
    assert row[17] == str(conversation_id(app, "+3725550001"))


def test_replies_are_exported_with_their_direction_and_status(app, export, deliver):
    from app import replies

    deliver(body_for(msg_id="m1", sender="+3725550001", recipient="+37250000000", text="Tere!"))
    with app.app_context():
        app.config.update(MESSENTE_API_USERNAME="u", MESSENTE_API_PASSWORD="p")
        conversation = conversation_of("+3725550001")
        first = replies.queue_reply(conversation, "Aitäh!", "sms", None, 1, "a" * 16)
        replies.record(first, conversation.id, "sent", omnimessage_id="omni-1")
        second = replies.queue_reply(conversation, "=1+1", "sms", None, 1, "b" * 16)
        replies.record(second, conversation.id, "failed", problem="Invalid data")
    from app.replies import delivery

    with app.app_context():
        delivery.apply_report(delivery.Report("omni-1", "DELIVRD", None))
    rows = export()[1:]
    assert [(row[1], row[2], row[4], row[8], row[9]) for row in rows] == [
        ("+3725550001", "+37250000000", "Tere!", "in", "received"),
        ("+37250000000", "+3725550001", "Aitäh!", "out", "DELIVRD"),
        ("+37250000000", "+3725550001", "'=1+1", "out", "failed"),
    ]


def test_csv_and_xlsx_carry_the_same_columns_and_values_with_agent_and_problem(app, client, export, deliver):
    from datetime import datetime, timedelta
    from decimal import Decimal

    from app import contacts, replies
    from app.replies import delivery

    deliver(
        body_for(
            msg_id="m1",
            sender="+3725550001",
            recipient="+37250000000",
            text="Tere!",
            time="2024-06-01T08:00:00.123456Z",
        )
    )
    with app.app_context():
        app.config.update(MESSENTE_API_USERNAME="u", MESSENTE_API_PASSWORD="p")
        conversation = conversation_of("+3725550001")
        contacts.set_contact(conversation.id, "Mari", "")
        delivered = replies.queue_reply(conversation, "Aitäh!", "sms", None, 1, "a" * 16)
        replies.record(delivered, conversation.id, "sent", omnimessage_id="omni-1")
        refused = replies.queue_reply(conversation, "=1+1", "sms", None, 1, "b" * 16)
        replies.record(refused, conversation.id, "failed", problem="Invalid data")
        undelivered = replies.queue_reply(conversation, "Kas said?", "sms", None, 1, "c" * 16)
        replies.record(undelivered, conversation.id, "sent", omnimessage_id="omni-3")
        reported = datetime(2024, 6, 1, 8, 5)
        delivery.apply_report(delivery.Report("omni-1", "DELIVRD", None, "sms", None, reported, Decimal("0.0912"), 2))
        delivery.apply_report(delivery.Report("omni-3", "FAILED", "=the number does not exist"))
    csv_header, *csv_rows = export()
    xlsx_header, *xlsx_rows = open_xlsx(download(client, "/export.xlsx")).active.iter_rows(values_only=True)
    assert csv_header == list(xlsx_header) == HEADER
    where = {name: HEADER.index(name) for name in HEADER}
    assert [
        [row[where[name]] for name in ("direction", "status", "contact_name", "agent", "assignee", "labels", "problem")]
        for row in csv_rows
    ] == [
        # alice replied to the unassigned conversation: she owns it now, on every row of it
        ["in", "received", "Mari", "", "alice", "", ""],
        ["out", "DELIVRD", "Mari", "alice", "alice", "", ""],
        ["out", "failed", "Mari", "alice", "alice", "", "Invalid data"],
        ["out", "FAILED", "Mari", "alice", "alice", "", "'=the number does not exist"],
    ]
    assert [row[where["price"]] + "/" + row[where["parts"]] for row in csv_rows] == ["/", "0.0912/2", "/", "/"]
    assert all(row[-1] for row in csv_rows)  # the last cell is never empty

    def comparable(row, from_xlsx: bool) -> list:
        cells = []
        for name, cell in zip(HEADER, row, strict=True):
            if name in ("time", "received_at"):  # a date cell in the workbook, its ISO text in the CSV
                cells.append(cell if from_xlsx else datetime.fromisoformat(cell.removesuffix("Z")))
            elif name in ("price", "parts"):  # a number cell in the workbook
                cells.append(None if cell in (None, "") else Decimal(str(cell)))
            else:  # text cells hold the text itself: the CSV's formula guard is its own
                cells.append(safe_cell(cell) if from_xlsx else cell)
        return cells

    xlsx_cells, csv_cells = [comparable(row, True) for row in xlsx_rows], [comparable(row, False) for row in csv_rows]
    times = [HEADER.index("time"), HEADER.index("received_at")]
    assert [[cell for n, cell in enumerate(row) if n not in times] for row in xlsx_cells] == [
        [cell for n, cell in enumerate(row) if n not in times] for row in csv_cells
    ]
    # The same instants (a spreadsheet date holds a fraction of a day: equal to the millisecond).
    assert all(
        abs(xlsx_row[n] - csv_row[n]) < timedelta(milliseconds=1)
        for xlsx_row, csv_row in zip(xlsx_cells, csv_cells, strict=True)
        for n in times
    )


def test_download_headers(client, export, deliver):
    with client.get("/export.csv") as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Disposition"] == f'attachment; filename="sms-inbox-{clock.now():%Y-%m-%d}.csv"'
        assert response.is_streamed


def test_every_cell_quoted_rfc4180_and_crlf(client, export, deliver):
    deliver(body_for(text='a,b "c"\r\nd', channel="sms", msg_id="m1", sub_msg_id=None))
    with client.get("/export.csv") as response:
        raw = response.data.decode("utf-8-sig")
    assert raw.startswith(",".join(f'"{name}"' for name in HEADER) + "\r\n")
    assert '"sms","a,b ""c""\r\nd","m1","",' in raw


# OWASP's CSV injection examples and their exact safe cells.
@pytest.mark.parametrize(
    "text, cell",
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://evil.example","click")', '\'=HYPERLINK("http://evil.example","click")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1+2", "'\t=1+2"),
        ("\r=1+2", "'\r=1+2"),
        ("\n=1+2", "'\n=1+2"),
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+37255512345", "+37255512345"),  # a plain phone number holds no formula
        ("+372 555", "'+372 555"),
        ("hello =1+2", "hello =1+2"),
        ("", ""),
    ],
)
def test_formula_cells_are_defused(export, deliver, text, cell):
    deliver(body_for(text=text))
    assert export()[1][4] == cell


def test_formula_in_every_column_is_defused(export, deliver):
    deliver(body_for(msg_id="=1+1", sub_msg_id="@x", sender="=evil()", recipient="-1", channel="+sms"))
    _, row = export()
    assert row[1:7] == ["'=evil()", "'-1", "'+sms", "Tere!", "'=1+1", "'@x"]


def test_the_contact_name_is_exported_defused_and_found_by_the_export_search(app, export, deliver):
    from app import contacts

    deliver(body_for(msg_id="named", sender="+37255512345"))
    deliver(body_for(msg_id="other", sender="+4470001"))
    with app.app_context():
        contacts.set_contact(conversation_id(app, "+37255512345"), "=Ülle()", "")
    rows = export("?q=ulle")
    assert [(row[5], row[10]) for row in rows[1:]] == [("named", "'=Ülle()")]


def test_nul_start_is_defused():
    assert safe_cell("\0=1") == "'\0=1"


# Cells the database's own line-building must treat exactly as `safe_cell` and `csv_line` do.
AWKWARD_CELLS = [
    "+",
    "+1",
    "+12a",
    "+1 2",
    "+٣",
    "=",
    "-",
    "@",
    "\t",
    "\r\n",
    '"',
    '""=1',
    "'=1",
    'a"b',
    "é=1",
    "😀",
    "+372\n",
    " =1",
    "x" * 300 + '"',
]


def test_the_database_builds_the_very_lines_python_would(app, client, auth, deliver):
    from app.clock import utc_iso
    from app.export import COLUMNS, csv_line

    auth.login()
    for n, cell in enumerate(AWKWARD_CELLS):
        short = cell[:12]
        assert deliver(
            body_for(
                msg_id=f"{short}#{n}",
                sub_msg_id=short,
                sender=f"{short}{n}",
                recipient=short,
                channel=short,
                text=cell,
                time=f"0001-01-0{1 + n % 9}T00:00:0{n % 10}.00000{n % 10}Z",
            )
        ).json == {"status": "stored"}
    deliver(body_for(recipient=None, sub_msg_id=None, time="9999-12-31T23:59:59.999999Z"))
    with app.app_context():
        from app.export import export_query
        from app.extensions import db

        rows = db.session.execute(export_query()).all()
    expected = (
        "\ufeff"
        + csv_line(COLUMNS)
        + "".join(
            csv_line(
                (
                    utc_iso(row[0], "microseconds"),
                    *(safe_cell(cell) for cell in row[1:7]),
                    utc_iso(row[7], "microseconds"),
                    *row[8:10],
                    *(safe_cell(cell) for cell in row[10:15]),
                    *(cell or "" for cell in row[15:18]),
                )
            )
            for row in rows
        )
    )
    assert len(rows) == len(AWKWARD_CELLS) + 1
    with client.get("/export.csv") as response:
        assert response.data.decode() == expected


def test_each_line_looks_up_the_conversation_name_owner_and_labels_once(app):
    """The line's cells of a looked-up value (name, author, owner, labels) are built inside their
    correlated subquery: each runs once per line, not once for each of the formula rule's and the
    quoting's references to its value (five to eight each, a third of the export's time at 10^6)."""
    from app.export import csv_line_sql, export_query
    from app.extensions import db

    with app.app_context():
        dialect = db.session.get_bind().dialect
        query = export_query()
        line = query.with_only_columns(csv_line_sql(query.selected_columns, dialect.name), maintain_column_froms=True)
        selects = [
            len(re.findall(r"\bSELECT\b", str(statement.compile(dialect=dialect)))) for statement in (query, line)
        ]
    assert selects[1] == selects[0] > 1  # the export's own statement and its subqueries, each once


def test_sender_phone_numbers_stay_as_they_are(export, deliver):
    deliver(body_for(sender="+37255512345", recipient="+37250000000"))
    assert export()[1][1:3] == ["+37255512345", "+37250000000"]


def conversation_id(app, sender: str) -> int:
    with app.app_context():
        return conversation_of(sender).id


def test_filter_by_search_conversation_and_dates(app, export, deliver):
    deliver(body_for(msg_id="a", sender="+37255512345", time="2024-06-01T00:00:00Z"))
    deliver(body_for(msg_id="b", sender="+37255512345", time="2024-06-02T23:59:59Z"))
    deliver(body_for(msg_id="c", sender="+4470001", time="2024-06-03T00:00:00Z"))

    def ids(rows):
        return [row[5] for row in rows[1:]]

    assert ids(export()) == ["a", "b", "c"]
    assert ids(export("?q=372+555")) == ["a", "b"]
    assert ids(export(f"?conversation={conversation_id(app, '+4470001')}")) == ["c"]
    assert ids(export("?from=2024-06-02&to=2024-06-02")) == ["b"]
    assert ids(export("?from=2024-06-02")) == ["b", "c"]
    assert ids(export("?to=2024-06-01")) == ["a"]
    assert ids(export("?q=372555&to=2024-06-01")) == ["a"]
    assert export("?q=%25") == [HEADER]
    assert ids(export("?to=9999-12-31")) == ["a", "b", "c"]  # the last day there is
    assert ids(export("?from=0001-01-01")) == ["a", "b", "c"]
    assert ids(export("?conversation=%C2%B2")) == ["a", "b", "c"]  # not an id: no filter


def test_bad_dates_are_a_clear_400(client, export):
    response = client.get("/export.csv?from=yesterday")
    assert response.status_code == 400
    assert "must be a date like 2024-06-01" in response.text


def test_export_links_in_the_pages(app, client, export, deliver):
    deliver(body_for(sender="+37255512345"))
    assert 'href="/export?q=372&amp;view=open"' in client.get("/?q=372").text  # the dialog, on the list's choices
    path = f"/conversations/{conversation_id(app, '+37255512345')}"
    assert f'href="/export?conversation={path.rsplit("/", 1)[1]}"' in client.get(path).text
    dialog = client.get(f"/export?conversation={path.rsplit('/', 1)[1]}").text
    assert "Only the conversation with" in dialog and "1 message with these choices" in dialog


def test_a_large_export_streams_in_chunks(client, export, deliver, app):
    from app.callbacks import ingest

    with app.app_context():
        ingest.store_messages([ingest.parse_payload(body_for(msg_id=f"bulk-{n}")) for n in range(3000)])
    with client.get("/export.csv") as response:
        chunks = list(response.response)
    assert len(chunks) > 3  # rows go out as they are read, not as one string
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"), newline="")))
    assert len(rows) == 3001 and len({row[5] for row in rows[1:]}) == 3000


# --- a real spreadsheet: LibreOffice Calc opens the export ------------------------------------

# (text as sent, what Calc shows in the text column): the first-character rule's `'` stays visible.
SPREADSHEET_TEXTS = [
    ("Hello;=1+1;bye", "Hello;=1+1;bye"),
    ("Hello\t=2+2\tbye", "Hello\t=2+2\tbye"),
    ("a|=3+3|b", "a|=3+3|b"),
    ('=HYPERLINK("http://x.example","click")', '\'=HYPERLINK("http://x.example","click")'),
    ("@SUM(1+1)", "'@SUM(1+1)"),
    ("+1+1", "'+1+1"),
    ("-1+1", "'-1+1"),
    ('Ta ütles "tere"; siis "=1+1", head aega', 'Ta ütles "tere"; siis "=1+1", head aega'),
    ("esimene rida\nteine rida", "esimene rida\nteine rida"),
    ("Tere, sõber! 😀 Õun, äär, öö, üle, šokolaad, žürii", "Tere, sõber! 😀 Õun, äär, öö, üle, šokolaad, žürii"),
]
# The separators people pick when opening a CSV: `,`, `;` (the list separator in much of Europe),
# tab and `|`; the text delimiter is always `"`.
SEPARATORS = (",", ";", "\t", "|")
ODF_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
ODF_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"


def soffice() -> str:
    path = shutil.which("soffice")
    if path is None:
        problem = "LibreOffice (soffice) is not installed; `make test` installs it as root with apt"
        if IN_CI:
            pytest.fail(problem + " (mandatory in CI)")
        pytest.skip(problem)
    return path


def calc_filter_options(separator: str) -> str:
    """LibreOffice's CSV import options: the tokens of the Text Import dialog, in its order."""
    return ",".join(
        (
            str(ord(separator)),  # 1 field separator
            "34",  # 2 text delimiter "
            "76",  # 3 UTF-8
            "1",  # 4 from line 1
            "",  # 5 no column types: Standard, Calc detects numbers
            "0",  # 6 language of the UI
            "false",  # 7 quoted field as text: no, as the dialog's default
            "true",  # 8 detect special numbers
            "true",
            "false",  # 9, 10 export-only
            "false",  # 11 trim spaces: no
            "0",  # 12 export-only
            "true",  # 13 evaluate formulas: yes, as the dialog's default
        )
    )


def odf_text(element) -> str:
    """The visible text of an ODF paragraph: runs of spaces, tabs and line breaks spelled out."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == ODF_TEXT + "s":
            parts.append(" " * int(child.get(ODF_TEXT + "c", "1")))
        elif child.tag == ODF_TEXT + "tab":
            parts.append("\t")
        elif child.tag == ODF_TEXT + "line-break":
            parts.append("\n")
        else:
            parts.append(odf_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def open_in_calc(csv_file: Path, separator: str, workdir: Path) -> list[list[tuple[str, str | None]]]:
    """Calc's rows for the file as (shown text, formula) cells, via a flat ODF spreadsheet."""
    outdir = workdir / f"separator-{ord(separator)}"
    result = subprocess.run(
        [
            soffice(),
            f"-env:UserInstallation={(workdir / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            f"--infilter=CSV:{calc_filter_options(separator)}",
            "--convert-to",
            "fods",
            "--outdir",
            str(outdir),
            str(csv_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    converted = outdir / (csv_file.stem + ".fods")
    assert result.returncode == 0 and converted.exists(), result.stdout + result.stderr
    sheet = ET.parse(converted).getroot()
    rows = []
    for row in sheet.iter(ODF_TABLE + "table-row"):
        cells = []
        for cell in row.findall(ODF_TABLE + "table-cell"):
            shown = "\n".join(odf_text(paragraph) for paragraph in cell.findall(ODF_TEXT + "p"))
            cells += [(shown, cell.get(ODF_TABLE + "formula"))] * int(
                cell.get(ODF_TABLE + "number-columns-repeated", "1")
            )
        while cells and cells[-1] == ("", None):
            cells.pop()
        if cells:
            rows.append(cells)
    return rows


def test_calc_evaluates_nothing_and_shows_every_text_with_any_separator(client, auth, deliver, tmp_path):
    soffice()
    auth.login()
    for n, (text, _) in enumerate(SPREADSHEET_TEXTS):
        assert (
            deliver(
                body_for(msg_id=f"m{n}", sub_msg_id=f"s{n}", sender="+37255512345", channel="sms", text=text)
            ).status_code
            == 200
        )
    csv_file = tmp_path / "export.csv"
    with client.get("/export.csv") as response:
        csv_file.write_bytes(response.data)

    sheets = {separator: open_in_calc(csv_file, separator, tmp_path) for separator in SEPARATORS}

    formulas = {
        separator: [(shown, formula) for row in rows for shown, formula in row if formula is not None]
        for separator, rows in sheets.items()
    }
    assert formulas == {separator: [] for separator in SEPARATORS}

    header, *rows = sheets[","]
    assert [shown for shown, _ in header] == HEADER
    assert [row[4][0] for row in rows] == [shown for _, shown in SPREADSHEET_TEXTS]
    assert [row[5][0] for row in rows] == [f"m{n}" for n in range(len(SPREADSHEET_TEXTS))]
    # Calc reads a quoted phone number as a number (a plain phone number keeps no `'`): not a formula.
    assert {row[1][0] for row in rows} == {"37255512345"}

    # With any other separator the file's commas separate nothing: each line stays one cell, in which
    # every text stands whole between its neighbours (a line break in a text starts a new row).
    for separator in (";", "\t", "|"):
        rows = sheets[separator]
        assert all(len(row) == 1 for row in rows), f"Calc split a line with separator {separator!r}"
        sheet = "\n".join(row[0][0] for row in rows)
        for _, shown in SPREADSHEET_TEXTS:
            assert f'","{shown}","' in sheet, (separator, shown)


# --- XLSX: a spreadsheet that stays one ---------------------------------------------------------

XLSX_TEXTS = [
    "+37255512345",
    "=1+1",
    '=HYPERLINK("http://x.example","click")',
    "@SUM(1+1)",
    "-1+1",
    "http://example.com/track",
    "0012",
    "1e5",
    "Tere, sõber! 😀 Õun, äär",
    "esimene rida\nteine rida",
]


def open_xlsx(data: bytes):
    import openpyxl

    return openpyxl.load_workbook(io.BytesIO(data))


def download(client, path: str) -> bytes:
    """The file a path answers with (closed after, as a server closes it: its temporary file goes)."""
    with client.get(path) as response:
        assert response.status_code == 200, path
        return response.data


def xlsx_messages(app, deliver):
    """One message per XLSX_TEXTS, from a contact whose name looks like a formula; then one from
    year 1 (before any spreadsheet date)."""
    from app import contacts

    for n, text in enumerate(XLSX_TEXTS):
        deliver(body_for(msg_id=f"m{n}", sender="+37255512345", text=text, time=f"2024-06-01T08:00:0{n}.250000Z"))
    with app.app_context():
        contacts.set_contact(conversation_id(app, "+37255512345"), "=Mari()", "")
    deliver(body_for(msg_id="old", sender="+37255512345", text="old", time="0001-01-01T00:00:00Z"))


def test_xlsx_keeps_every_text_as_typed_in_text_cells_and_times_as_dates(app, client, export, deliver):
    from datetime import datetime

    xlsx_messages(app, deliver)
    with client.get("/export.xlsx") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert response.headers["Content-Disposition"] == f"attachment; filename=sms-inbox-{clock.now():%Y-%m-%d}.xlsx"
        sheet = open_xlsx(response.data).active
    rows = list(sheet.iter_rows())
    assert [cell.value for cell in rows[0]] == HEADER
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:R{len(rows)}"
    texts = rows[1 : len(XLSX_TEXTS) + 1]
    # Text cells ('s'), exactly as typed: the `+` kept, no formula ('f'), no number, no link.
    assert [(row[4].value, row[4].data_type) for row in texts] == [(text, "s") for text in XLSX_TEXTS]
    assert all(
        cell.data_type in ("s", "d") and cell.hyperlink is None
        for row in rows
        for cell in row
        if cell.value is not None
    )
    assert {(row[1].value, row[1].data_type) for row in texts} == {("+37255512345", "s")}
    assert {row[10].value for row in texts} == {"=Mari()"}
    assert {row[17].value for row in texts} == {str(conversation_id(app, "+37255512345"))}
    # Times are date cells in UTC (to the second, as shown).
    assert [(row[0].value.replace(microsecond=0), row[0].data_type) for row in texts[:2]] == [
        (datetime(2024, 6, 1, 8, 0, 0), "d"),
        (datetime(2024, 6, 1, 8, 0, 1), "d"),
    ]
    assert rows[-1][0].value == "0001-01-01T00:00:00.000000Z"  # before 1900: no spreadsheet date, its text


def test_xlsx_keeps_texts_that_xml_must_escape_as_typed(app, client, export, deliver):
    texts = [
        "a & b < c > d",
        "  spaces around  ",
        "bell \x07 and \x1f",
        "_x0041_ stays",
        "tab\tand\r\nCRLF",
        "</t></is></c>",
        "x" * 40_000,
    ]
    for n, text in enumerate(texts):
        deliver(body_for(msg_id=f"m{n}", sender="+37255512345", text=text))
    stored = [row[4] for row in export()[1:]]
    cells = [
        row[4] for row in open_xlsx(download(client, "/export.xlsx")).active.iter_rows(min_row=2, values_only=True)
    ]
    # What XML cannot carry is written `_xHHHH_` (and a `_x` of the text's own escaped), which
    # spreadsheets read back as the character; openpyxl leaves that to its reader.
    shown = [re.sub(r"_x([0-9A-Fa-f]{4})_", lambda escaped: chr(int(escaped.group(1), 16)), cell) for cell in cells]
    assert shown == [text[:32_767] for text in stored]  # a cell holds at most 32,767 characters


def test_xlsx_filters_as_the_csv_does(app, client, export, deliver):
    deliver(body_for(msg_id="a", sender="+37255512345", time="2024-06-01T00:00:00Z"))
    deliver(body_for(msg_id="b", sender="+4470001", time="2024-06-03T00:00:00Z"))
    sheet = open_xlsx(download(client, "/export.xlsx?q=372555&to=2024-06-02")).active
    assert [row[5] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["a"]
    empty = open_xlsx(download(client, "/export.xlsx?q=no-such")).active
    assert [list(row) for row in empty.iter_rows(values_only=True)] == [HEADER]


def test_a_full_sheet_continues_on_the_next(app, export, deliver):
    from app.export import export_query, xlsx_file

    for n in range(5):
        deliver(body_for(msg_id=f"m{n}"))
    output = io.BytesIO()
    with app.app_context():
        assert xlsx_file(export_query(), output, rows_per_sheet=2) == 5
    workbook = open_xlsx(output.getvalue())
    assert workbook.sheetnames == ["Messages", "Messages 2", "Messages 3"]
    assert [[row[5] for row in sheet.iter_rows(values_only=True)] for sheet in workbook.worksheets] == [
        ["msg_id", "m0", "m1"],
        ["msg_id", "m2", "m3"],
        ["msg_id", "m4"],
    ]
    assert all(sheet.freeze_panes == "A2" for sheet in workbook.worksheets)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the file is the same from either
def test_calc_opens_the_xlsx_with_text_cells_dates_and_no_formula(app, client, export, deliver, tmp_path):
    soffice()
    xlsx_messages(app, deliver)
    xlsx = tmp_path / "export.xlsx"
    xlsx.write_bytes(download(client, "/export.xlsx"))
    result = subprocess.run(
        [
            soffice(),
            f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--convert-to",
            "fods",
            "--outdir",
            str(tmp_path / "calc"),
            str(xlsx),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    converted = tmp_path / "calc" / "export.fods"
    assert result.returncode == 0 and converted.exists(), result.stdout + result.stderr
    office = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
    rows = []
    for row in ET.parse(converted).getroot().iter(ODF_TABLE + "table-row"):
        cells = []
        for cell in row.findall(ODF_TABLE + "table-cell"):
            shown = "\n".join(odf_text(paragraph) for paragraph in cell.findall(ODF_TEXT + "p"))
            cells += [(shown, cell.get(office + "value-type"), cell.get(ODF_TABLE + "formula"))] * int(
                cell.get(ODF_TABLE + "number-columns-repeated", "1")
            )
        if any(shown for shown, _, _ in cells):
            rows.append(cells)
    assert [shown for shown, _, _ in rows[0][: len(HEADER)]] == HEADER
    texts = rows[1 : len(XLSX_TEXTS) + 1]
    assert [formula for row in rows for _, _, formula in row if formula] == []
    assert [row[4][:2] for row in texts] == [(text, "string") for text in XLSX_TEXTS]
    assert {row[1][:2] for row in texts} == {("+37255512345", "string")}
    assert {row[10][:2] for row in texts} == {("=Mari()", "string")}
    assert [row[0][1] for row in texts] == ["date"] * len(XLSX_TEXTS)
    assert texts[0][0][0] == "2024-06-01 08:00:00"


# --- the export dialog ---------------------------------------------------------------------------


def test_the_dialog_counts_what_the_choices_hold_and_downloads_them(app, client, export, deliver):
    from app import contacts

    deliver(body_for(msg_id="a", sender="+37255512345", time="2024-06-01T00:00:00Z"))
    deliver(body_for(msg_id="b", sender="+37255512345", time="2024-06-02T00:00:00Z"))
    deliver(body_for(msg_id="c", sender="+4470001", time="2024-06-03T00:00:00Z"))
    with app.app_context():
        contacts.set_status(conversation_id(app, "+4470001"), "done")

    page = client.get("/export?q=372&view=open&from=2024-06-02")
    assert page.status_code == 200
    assert '<h1 id="export-heading">Export messages</h1>' in page.text
    assert re.search(r'<p class="export-count" role="status">\s*1 message with these choices', page.text)
    for field in (
        'name="q" type="search" value="372"',
        'name="from" type="date" value="2024-06-02"',
        'name="to" type="date" value=""',
        '<option value="open" selected>Open</option>',
        'type="radio" name="format" value="xlsx" checked',
    ):
        assert field in page.text
    assert 'formaction="/export/download"' in page.text
    assert re.search(r"3 messages with these choices", client.get("/export").text)
    assert re.search(r"1 message with these choices", client.get("/export?view=done").text)

    csv_rows = list(
        csv.reader(
            io.StringIO(download(client, "/export/download?view=open&format=csv").decode("utf-8-sig"), newline="")
        )
    )
    assert [row[5] for row in csv_rows[1:]] == ["a", "b"]
    xlsx = download(client, "/export/download?view=done&format=xlsx")
    assert [row[5] for row in open_xlsx(xlsx).active.iter_rows(min_row=2, values_only=True)] == ["c"]

    # The search in message texts instead: only the messages that hold it.
    deliver(body_for(msg_id="d", sender="+4470001", text="Kas Tellimus jõudis?"))
    by_text = client.get("/export?q=tellimus&match=text&view=all").text
    assert re.search(r"1 message with these choices", by_text)
    assert 'name="match" value="text" checked' in by_text and 'name="q" type="search" value="tellimus"' in by_text
    assert re.search(r"0 messages with these choices", client.get("/export?q=te&match=text").text)
    assert [
        row[5]
        for row in list(
            csv.reader(
                io.StringIO(download(client, "/export.csv?q=TELLIMUS&match=text").decode("utf-8-sig"), newline="")
            )
        )[1:]
    ] == ["d"]


@ONE_DATABASE
def test_the_dialog_and_the_xlsx_need_a_login(client):
    for path in ("/export", "/export.xlsx", "/export/download?format=xlsx"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), path

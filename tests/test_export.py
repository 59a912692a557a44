"""CSV export: columns, encoding, quoting, formula safety, filters, streaming."""
import csv
import io
import re

import pytest

from app.export import safe_cell
from app.ingest import utcnow

from conftest import body_for

HEADER = ["time", "sender", "recipient", "channel", "text", "msg_id", "sub_msg_id", "received_at"]


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


def test_columns_times_and_unicode(export, deliver):
    deliver(body_for(msg_id="m1", sub_msg_id="s1", sender="+3725550001", recipient="+37250000000",
                     channel="whatsapp", time="2024-06-01T08:00:00.123456Z", text='Tere, "sõber"! 😀\nrida 2'))
    header, row = export()
    assert header == HEADER
    assert row[:7] == ["2024-06-01T08:00:00.123456Z", "+3725550001", "+37250000000", "whatsapp",
                       'Tere, "sõber"! 😀\nrida 2', "m1", "s1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[7])


def test_download_headers(client, export, deliver):
    with client.get("/export.csv") as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Disposition"] == f'attachment; filename="sms-inbox-{utcnow():%Y-%m-%d}.csv"'
        assert response.is_streamed


def test_rfc4180_quoting_and_crlf(client, export, deliver):
    deliver(body_for(text='a,b "c"\r\nd'))
    with client.get("/export.csv") as response:
        raw = response.data.decode("utf-8-sig")
    assert raw.startswith(",".join(HEADER) + "\r\n")
    assert '"a,b ""c""\r\nd"' in raw


# OWASP's CSV injection examples and their exact safe cells.
@pytest.mark.parametrize("text, cell", [
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
])
def test_formula_cells_are_defused(export, deliver, text, cell):
    deliver(body_for(text=text))
    assert export()[1][4] == cell


def test_formula_in_every_column_is_defused(export, deliver):
    deliver(body_for(msg_id="=1+1", sub_msg_id="@x", sender="=evil()", recipient="-1", channel="+sms"))
    _, row = export()
    assert row[1:7] == ["'=evil()", "'-1", "'+sms", "Tere!", "'=1+1", "'@x"]


def test_nul_start_is_defused():
    assert safe_cell("\0=1") == "'\0=1"


def test_sender_phone_numbers_stay_as_they_are(export, deliver):
    deliver(body_for(sender="+37255512345", recipient="+37250000000"))
    assert export()[1][1:3] == ["+37255512345", "+37250000000"]


def test_filter_by_search_sender_and_dates(export, deliver):
    deliver(body_for(msg_id="a", sender="+37255512345", time="2024-06-01T00:00:00Z"))
    deliver(body_for(msg_id="b", sender="+37255512345", time="2024-06-02T23:59:59Z"))
    deliver(body_for(msg_id="c", sender="+4470001", time="2024-06-03T00:00:00Z"))
    ids = lambda rows: [row[5] for row in rows[1:]]
    assert ids(export()) == ["a", "b", "c"]
    assert ids(export("?q=372+555")) == ["a", "b"]
    assert ids(export("?sender=%2B4470001")) == ["c"]
    assert ids(export("?from=2024-06-02&to=2024-06-02")) == ["b"]
    assert ids(export("?from=2024-06-02")) == ["b", "c"]
    assert ids(export("?to=2024-06-01")) == ["a"]
    assert ids(export("?q=372555&to=2024-06-01")) == ["a"]
    assert export("?q=%25") == [HEADER]


def test_bad_dates_are_a_clear_400(client, export):
    response = client.get("/export.csv?from=yesterday")
    assert response.status_code == 400
    assert "must be a date like 2024-06-01" in response.text


def test_export_links_in_the_pages(client, export, deliver):
    deliver(body_for(sender="+37255512345"))
    assert 'href="/export.csv?q=372"' in client.get("/?q=372").text
    assert 'href="/export.csv?sender=%2B37255512345"' in client.get("/conversations/%2B37255512345").text


def test_a_large_export_streams_in_chunks(client, export, deliver, app):
    from app import ingest
    from app.extensions import db
    with app.app_context():
        ingest.store_messages([ingest.parse_payload(body_for(msg_id=f"bulk-{n}")) for n in range(3000)])
        db.session.commit()
    with client.get("/export.csv") as response:
        chunks = list(response.response)
    assert len(chunks) > 3  # rows go out as they are read, not as one string
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"), newline="")))
    assert len(rows) == 3001 and len({row[5] for row in rows[1:]}) == 3000

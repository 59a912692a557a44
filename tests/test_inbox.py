"""The inbox: conversations, search, threads, polling, read state, escaping, pagination."""
import re
from datetime import timedelta
from html import unescape
from urllib.parse import quote

import pytest

from app.ingest import utcnow

from conftest import body_for


@pytest.fixture
def inbox(client, auth, deliver):
    """A logged-in client and a way to deliver messages."""
    auth.login()
    return deliver


def senders_listed(html: str) -> list[str]:
    return [unescape(s) for s in re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', html)]


def unread_badge(html: str, sender: str) -> str | None:
    row = re.search(rf'<tr class="\w+">\s*<th scope="row"><a href="[^"]+">{re.escape(sender)}</a>.*?</tr>', html, re.S)
    badge = re.search(r'<span class="badge">(\d+)', row.group(0))
    return badge.group(1) if badge else None


def test_conversations_one_row_per_sender_newest_first_with_counts(client, inbox):
    inbox(body_for(sender="+3725550001", text="old"))
    inbox(body_for(sender="+3725550002", text="middle"))
    inbox(body_for(sender="+3725550001", text="newest"))
    page = client.get("/")
    assert senders_listed(page.text) == ["+3725550001", "+3725550002"]
    assert unread_badge(page.text, "+3725550001") == "2"
    assert "newest" in page.text and "old</td>" not in page.text
    assert "<title>(2) Inbox · sms-inbox</title>" in page.text


def test_page_is_accessible_in_its_structure(client, inbox):
    inbox(body_for())
    page = client.get("/").text
    assert '<html lang="en">' in page and page.count("<h1>") == 1
    assert "<main" in page and "<header" in page and 'role="search"' in page
    assert '<label for="q">' in page
    assert re.search(r'<time datetime="2024-06-01T08:00:00Z"', page)


def test_empty_inbox_says_what_to_do(client, auth):
    auth.login()
    page = client.get("/").text
    assert "No messages yet" in page
    assert "http://localhost/callbacks/inbound" in page and "send-test-message" in page


def test_text_is_escaped_everywhere(client, inbox):
    inbox(body_for(sender="+1555", text='<script>alert(1)</script><img src=x onerror="alert(2)">'))
    for url in ("/", "/conversations/%2B1555"):
        page = client.get(url).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("query, expected", [
    ("372 555", ["+37255512345"]),
    ("(555) 12", ["+37255512345"]),
    ("+372-555-123", ["+37255512345"]),
    ("4470", ["+447000111"]),
    ("555", ["+37255512345", "+15550100"]),
    ("99999", []),
    ("%", []),
    ("_", []),
    ("' OR 1=1 --", []),
    ("<b>", []),
])
def test_search_by_any_part_of_the_digits(client, inbox, query, expected):
    for sender in ("+15550100", "+447000111", "+37255512345"):
        inbox(body_for(sender=sender))
    page = client.get("/?q=" + quote(query))
    assert page.status_code == 200
    assert sorted(senders_listed(page.text)) == sorted(expected)
    assert f'value="{query}"'.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") in page.text
    if not expected:
        assert "No sender matches" in page.text


def test_search_as_you_type_returns_the_fragment_only(client, inbox):
    inbox(body_for(sender="+37255512345"))
    fragment = client.get("/?q=555", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith("<title>")
    assert "<html" not in fragment.text and 'id="conversations"' in fragment.text
    assert "HX-Request" in fragment.headers["Vary"]


def test_poll_answers_204_when_nothing_is_new_and_the_rows_when_something_is(client, inbox):
    inbox(body_for(sender="+3725550001"))
    page = client.get("/").text
    poll_url = unescape(re.search(r'hx-get="(/\?since=\d+)"', page).group(1))
    nothing = client.get(poll_url, headers={"HX-Request": "true"})
    assert nothing.status_code == 204 and nothing.data == b""
    inbox(body_for(sender="+3725550002", text="brand new"))
    news = client.get(poll_url, headers={"HX-Request": "true"})
    assert news.status_code == 200 and "brand new" in news.text
    next_poll = unescape(re.search(r'hx-get="(/\?since=\d+)"', news.text).group(1))
    assert next_poll != poll_url
    assert client.get(next_poll, headers={"HX-Request": "true"}).status_code == 204


def test_poll_keeps_the_search(client, inbox):
    inbox(body_for(sender="+3725550001"))
    page = client.get("/?q=372").text
    assert re.search(r'hx-get="/\?q=372&amp;since=\d+"', page)


def test_thread_oldest_first_and_opening_it_marks_read(app, client, inbox):
    for text in ("first", "second", "third"):
        inbox(body_for(sender="+3725550001", text=text))
    assert unread_badge(client.get("/").text, "+3725550001") == "3"
    thread = client.get("/conversations/%2B3725550001")
    assert thread.status_code == 200
    texts = re.findall(r'<p class="text">([^<]*)</p>', thread.text)
    assert texts == ["first", "second", "third"]
    assert thread.text.count("<h1>") == 1 and "+3725550001</h1>" in thread.text
    assert unread_badge(client.get("/").text, "+3725550001") is None


def test_sender_with_plus_in_the_url_both_encoded_and_raw(client, inbox):
    inbox(body_for(sender="+3725550001", text="hello"))
    assert "hello" in client.get("/conversations/+3725550001").text
    assert "hello" in client.get("/conversations/%2B3725550001").text
    assert 'href="/conversations/+3725550001"' in client.get("/").text


def test_mark_unread(app, client, auth, inbox):
    inbox(body_for(sender="+3725550001"))
    client.get("/conversations/%2B3725550001")
    response = client.post("/conversations/%2B3725550001/unread", data={"csrf_token": auth.csrf()})
    assert response.status_code == 302
    assert unread_badge(client.get("/").text, "+3725550001") == "1"


def test_mark_unread_needs_csrf(client, inbox):
    inbox(body_for(sender="+3725550001"))
    client.get("/conversations/%2B3725550001")
    assert client.post("/conversations/%2B3725550001/unread").status_code == 400
    assert unread_badge(client.get("/").text, "+3725550001") is None


def test_thread_poll_appends_new_messages_and_moves_the_poller(client, inbox):
    inbox(body_for(sender="+3725550001", text="one"))
    page = client.get("/conversations/%2B3725550001").text
    poll_url = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
    inbox(body_for(sender="+4400000000", text="someone else"))
    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
    inbox(body_for(sender="+3725550001", text="two"))
    news = client.get(poll_url, headers={"HX-Request": "true"})
    assert re.findall(r'<p class="text">([^<]*)</p>', news.text) == ["two"]
    assert 'hx-swap-oob="true"' in news.text


@pytest.mark.parametrize("path", [
    "/conversations/..%2F..%2Fetc%2Fpasswd", "/conversations/../../etc/passwd",
    "/conversations/%2B0000", "/conversations/%00", "/conversations/" + "9" * 500,
])
def test_unknown_or_hostile_thread_paths_are_404(client, inbox, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("params", ["before=99999999999999999999999999", "before=-5", "before=abc",
                                    "since=1e9", "since=99999999999999999999999999", "before=0"])
def test_absurd_cursors_are_harmless(client, inbox, params):
    inbox(body_for())
    assert client.get("/?" + params).status_code in (200, 204)


def test_pagination_50_a_page_with_a_cursor(app, client, inbox):
    for n in range(55):
        inbox(body_for(sender=f"+3725550{n:03d}"))
    first = client.get("/").text
    assert len(senders_listed(first)) == 50
    assert senders_listed(first)[0] == "+3725550054"
    older = unescape(re.search(r'<a href="([^"]+)">Older conversations</a>', first).group(1))
    second = client.get(older).text
    assert senders_listed(second) == [f"+3725550{n:03d}" for n in range(4, -1, -1)]
    assert "Older conversations" not in second
    assert "data-poll" not in second  # only the first page follows new messages


def test_huge_conversation_shows_the_latest_and_links_to_earlier(client, inbox, app):
    for n in range(505):
        inbox(body_for(sender="+3725550001", text=f"message {n}"))
    thread = client.get("/conversations/%2B3725550001").text
    texts = re.findall(r'<p class="text">([^<]*)</p>', thread)
    assert len(texts) == 500 and texts[0] == "message 5" and texts[-1] == "message 504"
    earlier = unescape(re.search(r'<a href="([^"]+)">Earlier messages</a>', thread).group(1))
    assert re.findall(r'<p class="text">([^<]*)</p>', client.get(earlier).text) == [f"message {n}" for n in range(5)]


def test_chart_counts_messages_per_day(client, inbox):
    for _ in range(3):
        inbox(body_for())
    page = client.get("/").text
    today = utcnow().date()
    assert f"<title>{today}: 3</title>" in page
    assert f"<title>{today - timedelta(days=29)}: 0</title>" in page
    assert page.count("<rect ") == 30


def test_times_are_machine_readable_utc(client, inbox):
    inbox(body_for(sender="+1", time="2024-06-01T08:00:00.000000Z"))
    thread = client.get("/conversations/%2B1").text
    assert '<time datetime="2024-06-01T08:00:00Z" title="2024-06-01T08:00:00Z">2024-06-01 08:00 UTC</time>' in thread


def test_unicode_senders_and_texts_render(client, inbox):
    inbox(body_for(sender="+3725550001", text="Tšau! Как дела? 😀"))
    assert "Tšau! Как дела? 😀" in client.get("/").text
    assert "Tšau! Как дела? 😀" in client.get("/conversations/%2B3725550001").text


def test_every_response_has_security_headers(client, inbox):
    for url in ("/", "/login", "/static/style.css", "/export.csv"):
        with client.get(url) as response:
            headers = response.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert "unsafe-eval" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"]


def test_pages_have_no_inline_script_or_style(client, inbox):
    inbox(body_for())
    for url in ("/", "/conversations/%2B37255512345", "/login"):
        page = client.get(url).text
        assert not re.search(r"<script(?![^>]*\ssrc=)", page)
        assert " style=" not in page and "<style" not in page and " hx-on" not in page

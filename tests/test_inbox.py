"""The inbox: conversations, search, threads, polling, read state, escaping, pagination."""

import re
from datetime import UTC, datetime, timedelta
from html import escape, unescape
from html.parser import HTMLParser
from urllib.parse import quote, urlencode

import pytest

from app import clock
from conftest import body_for
from helpers import Clock


@pytest.fixture
def inbox(client, auth, deliver):
    """A logged-in client and a way to deliver messages."""
    auth.login()
    return deliver


def thread_path(client, sender: str) -> str:
    """A conversation's own URL, found as an old link finds it: through the redirect."""
    response = client.get("/conversations/" + quote(sender, safe=""))
    assert response.status_code == 301
    return response.headers["Location"]


# A row's link to its conversation, with the stable id that keeps focus across polls.
ROW_LINK = r'<a id="conversation-link-\d+" class="sender" href="[^"]+"[^>]*>'


def heading(sender: str) -> str:
    """The page's heading for a conversation, its sender isolated from the text around it."""
    return f"Conversation with <bdi>{sender}</bdi></h1>"


def texts_shown(html: str) -> list[str]:
    return [unescape(text) for text in re.findall(r'<p class="text" dir="auto">([^<]*)</p>', html)]


def senders_listed(html: str) -> list[str]:
    return [unescape(s) for s in re.findall(r'<li data-sender="([^"]*)"', html)]


def unread_badge(html: str, sender: str) -> str | None:
    row = re.search(rf'<li data-sender="{re.escape(escape(sender))}".*?</li>', html, re.S)
    badge = re.search(r'<span class="badge">(\d+)', row.group(0))
    return badge.group(1) if badge else None


def test_conversations_one_row_per_sender_newest_first_with_counts(client, inbox):
    inbox(body_for(sender="+3725550001", text="old"))
    inbox(body_for(sender="+3725550002", text="middle"))
    inbox(body_for(sender="+3725550001", text="newest"))
    page = client.get("/")
    assert senders_listed(page.text) == ["+3725550001", "+3725550002"]
    assert unread_badge(page.text, "+3725550001") == "2"
    assert "newest" in page.text and "old</bdi>" not in page.text
    assert "<title>(2) Inbox · sms-inbox</title>" in page.text


class Structure(HTMLParser):
    """What a screen reader and a keyboard rely on, read from the HTML as a parser reads it."""

    def __init__(self, html: str):
        super().__init__()
        self.tags, self.labels_for, self.inputs, self.buttons, self.times = [], set(), [], [], []
        self.lang = self.title = None
        self.in_title = self.in_button = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.lang = attrs.get("lang")
        elif tag == "title":
            self.in_title = True
        elif tag == "label" and attrs.get("for"):
            self.labels_for.add(attrs["for"])
        elif tag in ("input", "textarea", "select") and attrs.get("type") != "hidden":
            self.inputs.append(attrs)
        elif tag == "button":
            self.in_button, self.buttons = True, self.buttons + [""]
        elif tag == "time":
            self.times.append(attrs.get("datetime"))

    def handle_endtag(self, tag):
        self.in_title = self.in_title and tag != "title"
        self.in_button = self.in_button and tag != "button"

    def handle_data(self, data):
        if self.in_title:
            self.title = (self.title or "") + data
        if self.in_button:
            self.buttons[-1] += data.strip()

    def problems(self) -> list[str]:
        found = []
        if not self.lang:
            found.append("no lang on <html>")
        if not (self.title or "").strip():
            found.append("no title")
        if self.tags.count("h1") != 1:
            found.append(f"{self.tags.count('h1')} h1 elements")
        for landmark in ("header", "main"):
            if self.tags.count(landmark) != 1:
                found.append(f"{self.tags.count(landmark)} <{landmark}> landmarks")
        found += [
            f"unlabelled input {attrs}"
            for attrs in self.inputs
            if attrs.get("id") not in self.labels_for and not attrs.get("aria-label")
        ]
        found += ["a button without a name" for name in self.buttons if not name]
        found += [
            f"<time> without a valid datetime: {value}"
            for value in self.times
            if not value or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value)
        ]
        return found


def test_every_page_has_the_structure_assistive_technology_needs(client, inbox):
    inbox(body_for(sender="+3725550001"))
    pages = {
        "inbox": "/",
        "search": "/?q=372",
        "empty search": "/?q=999999",
        "thread": thread_path(client, "+3725550001"),
    }
    for name, path in pages.items():
        assert Structure(client.get(path).text).problems() == [], name
    client.post(
        "/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)}
    )
    assert Structure(client.get("/login").text).problems() == [], "login"


def test_the_structure_check_finds_what_is_missing():
    broken = (
        "<html><head><title></title></head><body><main><h1>a</h1><h1>b</h1>"
        '<input id="q"><button></button><time datetime="yesterday">x</time></main></body></html>'
    )
    assert Structure(broken).problems() == [
        "no lang on <html>",
        "no title",
        "2 h1 elements",
        "0 <header> landmarks",
        "unlabelled input {'id': 'q'}",
        "a button without a name",
        "<time> without a valid datetime: yesterday",
    ]


def test_empty_inbox_says_what_to_do(client, auth):
    auth.login()
    page = client.get("/").text
    assert "No messages yet" in page
    assert "http://localhost/callbacks/inbound" in page and "send-test-message" in page


def test_text_is_escaped_everywhere(client, inbox):
    inbox(body_for(sender="+1555", text='<script>alert(1)</script><img src=x onerror="alert(2)">'))
    for url in ("/", thread_path(client, "+1555")):
        page = client.get(url).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    "query, expected",
    [
        ("372 555", ["+37255512345"]),
        ("(555) 12", ["+37255512345"]),
        ("+372-555-123", ["+37255512345"]),
        ("4470", ["+447000111"]),
        ("0044 7000 111", ["+447000111"]),  # as dialled from abroad, with a trunk 0, or at home
        ("+44 (0)7000 111", ["+447000111"]),
        ("07000 111", ["+447000111"]),
        ("555", ["+37255512345", "+15550100"]),
        ("99999", []),
        ("%", []),
        ("_", []),
        ("' OR 1=1 --", []),
        ("<b>", []),
    ],
)
def test_search_by_any_part_of_the_digits(client, inbox, query, expected):
    for sender in ("+15550100", "+447000111", "+37255512345"):
        inbox(body_for(sender=sender))
    page = client.get("/?q=" + quote(query))
    assert page.status_code == 200
    assert sorted(senders_listed(page.text)) == sorted(expected)
    assert f'value="{query}"'.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") in page.text
    if not expected:
        assert "No conversation matches" in page.text


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


def test_watchers_of_one_list_share_its_rendering_for_a_quarter_second(app, client, inbox):
    """Under steady traffic every poll finds news: one rendering serves all who are behind it."""
    app.config["CLOCK"] = moment = Clock()
    inbox(body_for(sender="+3725550001"))
    poll_url = unescape(re.search(r'hx-get="(/\?since=\d+)"', client.get("/").text).group(1))
    inbox(body_for(sender="+3725550002", text="first news"))
    first = client.get(poll_url, headers={"HX-Request": "true"}).text
    inbox(body_for(sender="+3725550003", text="second news"))
    # Another page as far behind, a moment later: the same list, and its next poll brings the rest.
    other = client.get(poll_url, headers={"HX-Request": "true"}).text
    assert "first news" in other and "second news" not in other
    assert shared_part(other) == shared_part(first)  # the view and owner tabs (Mentions, Mine) are each poll's own
    next_poll = unescape(re.search(r'hx-get="(/\?since=\d+)"', other).group(1))
    caught_up = client.get(next_poll, headers={"HX-Request": "true"}).text
    assert "second news" in caught_up and '<p id="announcer" hx-swap-oob="innerHTML">1 new message</p>' in caught_up
    # Once the quarter second has passed, a page that far behind gets a rendering of its own,
    # which serves for as long as nothing changes.
    moment.advance(seconds=0.25)
    latest = client.get(poll_url, headers={"HX-Request": "true"}).text
    assert "second news" in latest
    moment.advance(minutes=5)
    assert client.get(poll_url, headers={"HX-Request": "true"}).text == latest


def shared_part(poll: str) -> str:
    """A list poll's answer without the view and owner tabs, which each poll renders for its person."""
    return re.sub(r'<nav id="(view|owner)-tabs".*?</nav>', "", poll, flags=re.S)


def test_a_shared_list_announces_every_message_it_shows(app, client, inbox):
    """A conversation that changed again after the shared rendering still counts what it shows."""
    app.config["CLOCK"] = Clock()
    since_empty = unescape(re.search(r'hx-get="(/\?since=\d+)"', client.get("/").text).group(1))
    inbox(body_for(sender="+3725550001"))
    since_one = unescape(re.search(r'hx-get="(/\?since=\d+)"', client.get("/").text).group(1))
    inbox(body_for(sender="+3725550002", text="first"))
    assert "1 new message<" in client.get(since_one, headers={"HX-Request": "true"}).text
    inbox(body_for(sender="+3725550002", text="second"))
    behind = client.get(since_empty, headers={"HX-Request": "true"}).text
    assert "first" in behind and "second" not in behind
    assert '<p id="announcer" hx-swap-oob="innerHTML">2 new messages</p>' in behind


def test_poll_keeps_the_search(client, inbox):
    inbox(body_for(sender="+3725550001"))
    page = client.get("/?q=372").text
    assert re.search(r'hx-get="/\?since=\d+&amp;q=372"', page)


def test_thread_oldest_first_and_opening_it_changes_nothing(app, client, inbox):
    for text in ("first", "second", "third"):
        inbox(body_for(sender="+3725550001", text=text))
    assert unread_badge(client.get("/").text, "+3725550001") == "3"
    thread = client.get(thread_path(client, "+3725550001"))
    assert thread.status_code == 200
    assert texts_shown(thread.text) == ["first", "second", "third"]
    assert thread.text.count("<h1") == 1 and "Conversation with <bdi>" in thread.text
    # A GET changes no state: another site could make a browser open this URL.
    assert unread_badge(client.get("/").text, "+3725550001") == "3"
    assert client.get(thread_path(client, "+3725550001") + "?since=0").status_code == 200
    assert unread_badge(client.get("/").text, "+3725550001") == "3"


def mark_read_form(html: str) -> tuple[str, dict]:
    action = unescape(re.search(r'<form method="post" action="([^"]+/read)"', html).group(1))
    through = re.search(r'name="through" value="(\d+)"', html).group(1)
    return action, {"through": through, "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)}


def mark_read(client, path: str):
    action, form = mark_read_form(client.get(path).text)
    assert client.post(action, data=form).status_code == 303


def test_mark_read_by_post_through_the_newest_message_shown(app, client, inbox):
    for text in ("first", "second"):
        inbox(body_for(sender="+3725550001", text=text))
    path = thread_path(client, "+3725550001")
    action, form = mark_read_form(client.get(path).text)
    assert 'hx-trigger="load, submit"' in client.get(path).text  # shown means read, with htmx
    inbox(body_for(sender="+3725550001", text="arrived after the page was shown"))
    response = client.post(action, data=form)
    assert response.status_code == 303 and response.headers["Location"] == path
    assert unread_badge(client.get("/").text, "+3725550001") == "1"  # the one not yet seen


def test_mark_read_needs_csrf_and_a_message_id(client, inbox):
    inbox(body_for(sender="+3725550001"))
    action, form = mark_read_form(client.get(thread_path(client, "+3725550001")).text)
    assert client.post(action, data={"through": form["through"]}).status_code == 400
    assert client.post(action, data={**form, "through": "²"}).status_code == 400
    assert unread_badge(client.get("/").text, "+3725550001") == "1"


def test_mark_read_and_unread_with_htmx_swap_the_control(client, inbox):
    inbox(body_for(sender="+3725550001"))
    path = thread_path(client, "+3725550001")
    action, form = mark_read_form(client.get(path).text)
    read = client.post(action, data=form, headers={"HX-Request": "true"})
    assert read.status_code == 200 and read.text.lstrip().startswith('<div id="read-state"')
    assert "Mark unread" in read.text
    unread = client.post(path + "/unread", data={"csrf_token": form["csrf_token"]}, headers={"HX-Request": "true"})
    assert "Mark read" in unread.text
    assert "load" not in re.search(r'hx-trigger="([^"]+)"', unread.text).group(1)  # stays unread
    assert unread_badge(client.get("/").text, "+3725550001") == "1"


def test_old_sender_links_redirect_to_the_conversation(client, inbox):
    inbox(body_for(sender="+3725550001", text="hello"))
    path = thread_path(client, "+3725550001")
    assert re.fullmatch(r"/conversations/\d+", path)
    for old in ("/conversations/+3725550001", "/conversations/%2B3725550001"):
        assert client.get(old).headers["Location"] == path
    digits_only = client.get("/conversations/3725550001")  # the + lost on the way
    assert digits_only.status_code == 302 and digits_only.headers["Location"] == path
    assert "hello" in client.get(path).text
    assert f'href="{path}"' in client.get("/").text


@pytest.mark.parametrize("sender", ["a/b", "<b>x</b>", "../export.csv", "..", "%2F", "x?y#z", "İ" * 64])
def test_every_stored_sender_opens_its_thread_and_can_be_marked_read(client, inbox, sender):
    inbox(body_for(sender=sender, text="odd sender"))
    listing = client.get("/").text
    [link] = re.findall(r'<a id="conversation-link-\d+" class="sender" href="([^"]+)"', listing)
    assert re.fullmatch(r"/conversations/\d+", link)
    thread = client.get(link)
    assert thread.status_code == 200 and texts_shown(thread.text) == ["odd sender"]
    assert heading(escape(sender)) in thread.text
    action, form = mark_read_form(thread.text)
    assert client.post(action, data=form).status_code == 303
    assert 'class="badge"' not in client.get("/").text


def test_mark_unread(app, client, auth, inbox):
    inbox(body_for(sender="+3725550001"))
    path = thread_path(client, "+3725550001")
    mark_read(client, path)
    response = client.post(path + "/unread", data={"csrf_token": auth.csrf()})
    assert response.status_code == 303 and response.headers["Location"] == path  # stays on the page
    assert unread_badge(client.get("/").text, "+3725550001") == "1"


def test_mark_unread_needs_csrf(client, inbox):
    inbox(body_for(sender="+3725550001"))
    path = thread_path(client, "+3725550001")
    mark_read(client, path)
    assert client.post(path + "/unread").status_code == 400
    assert unread_badge(client.get("/").text, "+3725550001") is None


def test_a_change_made_in_one_session_reaches_another_sessions_poll(app, client, inbox, auth):
    from conftest import AuthActions

    inbox(body_for(sender="+3725550001"))
    other = app.test_client()
    AuthActions(other).login()
    path = thread_path(client, "+3725550001")
    mark_read(client, path)
    page = other.get("/").text
    list_poll = unescape(re.search(r'hx-get="(/\?since=\d+)"', page).group(1))
    thread_poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', other.get(path).text).group(1))
    assert other.get(list_poll, headers={"HX-Request": "true"}).status_code == 204
    assert other.get(thread_poll, headers={"HX-Request": "true"}).status_code == 204

    client.post(path + "/unread", data={"csrf_token": auth.csrf()})  # no new message, only a change
    listed = other.get(list_poll, headers={"HX-Request": "true"})
    assert listed.status_code == 200 and unread_badge(listed.text, "+3725550001") == "1"
    in_thread = other.get(thread_poll, headers={"HX-Request": "true"})
    assert in_thread.status_code == 200 and texts_shown(in_thread.text) == []
    assert "Mark read" in in_thread.text and 'id="read-state" hx-swap-oob="true"' in in_thread.text


def showing(html: str) -> dict[str, str]:
    """What the page's header buttons show, as its thread poll sends it (`hx-include`)."""
    return dict(re.findall(r'<input type="hidden" name="(showing_\w+)" value="([^"]*)" data-showing>', html))


def test_a_poll_swaps_only_the_header_buttons_whose_state_changed(app, client, inbox, auth):
    from conftest import AuthActions

    inbox(body_for(sender="+3725550001"))
    path = thread_path(client, "+3725550001")
    mark_read(client, path)
    other = app.test_client()
    AuthActions(other).login()
    page = other.get(path).text
    thread_poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    shown = showing(page)
    assert shown == {
        "showing_status": "open",
        "showing_unread": "0",
        "showing_opt_out": "in",
        "showing_owner": "",
        "showing_labels": "",
        "showing_snooze": "",
    }

    client.post(path + "/status", data={"csrf_token": auth.csrf(), "status": "done"})
    update = other.get(thread_poll + "&" + urlencode(shown), headers={"HX-Request": "true"})
    assert update.status_code == 200 and "Reopen" in update.text
    # The read and opt-out buttons stay the elements they were: a click landing on one is kept.
    assert 'id="read-state"' not in update.text and 'id="opt-out"' not in update.text
    assert 'id="owner"' not in update.text and 'id="assign-to"' not in update.text
    assert 'id="snooze"' not in update.text

    client.post(path + "/unread", data={"csrf_token": auth.csrf()})
    shown["showing_status"] = "done"  # the page now shows what the last poll brought
    update = other.get(thread_poll + "&" + urlencode(shown), headers={"HX-Request": "true"})
    assert "Mark read" in update.text and 'id="read-state" hx-swap-oob="true"' in update.text
    assert 'id="status"' not in update.text and 'id="opt-out"' not in update.text


def test_thread_poll_appends_new_messages_and_moves_the_poller(client, inbox):
    inbox(body_for(sender="+3725550001", text="one"))
    page = client.get(thread_path(client, "+3725550001")).text
    poll_url = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
    inbox(body_for(sender="+4400000000", text="someone else"))
    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
    inbox(body_for(sender="+3725550001", text="two"))
    news = client.get(poll_url, headers={"HX-Request": "true"})
    assert texts_shown(news.text) == ["two"]
    assert 'hx-swap-oob="true"' in news.text
    next_poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', news.text).group(1))
    assert client.get(next_poll, headers={"HX-Request": "true"}).status_code == 204


def test_a_poll_brings_at_most_a_page_and_the_next_poll_the_rest(client, inbox):
    inbox(body_for(sender="+3725550001", text="before"))
    page = client.get(thread_path(client, "+3725550001")).text
    poll_url = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    for n in range(120):
        inbox(body_for(sender="+3725550001", text=f"new {n}"))
    first = client.get(poll_url, headers={"HX-Request": "true"})
    assert texts_shown(first.text) == [f"new {n}" for n in range(100)]
    poll_url = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', first.text).group(1))
    second = client.get(poll_url, headers={"HX-Request": "true"})
    assert texts_shown(second.text) == [f"new {n}" for n in range(100, 120)]
    poll_url = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', second.text).group(1))
    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204


@pytest.mark.parametrize(
    "path",
    [
        "/conversations/..%2F..%2Fetc%2Fpasswd",
        "/conversations/%2B0000",
        "/conversations/%00",
        "/conversations/0",
        "/conversations/" + "9" * 500,
        "/conversations/9223372036854775808",
    ],
)
def test_unknown_threads_are_404(client, inbox, path):
    inbox(body_for(sender="+3725550001"))
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        "before=99999999999999999999999999",
        "before=-5",
        "before=abc",
        "before=%C2%B2",
        "before=①",
        "before=2147483648",
        "before=9223372036854775808",
        "before=0",
    ],
)
def test_odd_list_cursors_are_ignored_or_empty(client, inbox, params):
    inbox(body_for(sender="+3725550001"))
    response = client.get("/?" + params)
    assert response.status_code == 200
    listed = senders_listed(response.text)
    assert listed == ([] if params == "before=0" else ["+3725550001"])


@pytest.mark.parametrize(
    "params", ["since=1e9", "since=²", "since=%C2%B2", "since=-1", "since=99999999999999999999999999"]
)
def test_odd_poll_cursors_are_a_full_answer(client, inbox, params):
    inbox(body_for(sender="+3725550001"))
    response = client.get("/?" + params, headers={"HX-Request": "true"})
    assert response.status_code == 200 and senders_listed(response.text) == ["+3725550001"]


@pytest.mark.parametrize(
    "params", ["before=①", "before=%C2%B2", "since=²", "since_id=①&since=0", "before=9223372036854775808"]
)
def test_odd_thread_cursors_are_ignored(client, inbox, params):
    inbox(body_for(sender="+3725550001", text="hello"))
    response = client.get(thread_path(client, "+3725550001") + "?" + params)
    assert response.status_code == 200 and "hello" in response.text


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
    assert "Back to latest" not in first
    latest = unescape(re.search(r'<a href="([^"]+)">Back to latest</a>', second).group(1))
    assert latest == "/" and senders_listed(client.get(latest).text) == senders_listed(first)
    searched = client.get("/?q=3725550&before=" + older.rsplit("=", 1)[1]).text
    assert 'href="/?q=3725550">Back to latest</a>' in searched


def test_huge_conversation_shows_the_latest_and_pages_both_ways(client, inbox, app):
    for n in range(105):
        inbox(body_for(sender="+3725550001", text=f"message {n}"))
    thread = client.get(thread_path(client, "+3725550001")).text
    texts = texts_shown(thread)
    assert len(texts) == 100 and texts[0] == "message 5" and texts[-1] == "message 104"
    earlier = unescape(re.search(r'<a href="([^"]+)"[^>]*>Earlier messages</a>', thread).group(1))
    older_page = client.get(earlier).text
    assert texts_shown(older_page) == [f"message {n}" for n in range(5)]
    assert "Back to latest" not in thread
    latest = unescape(re.search(r'<a href="([^"]+)"[^>]*>Back to latest</a>', older_page).group(1))
    assert latest == thread_path(client, "+3725550001") and texts_shown(client.get(latest).text)[-1] == "message 104"
    # Newer messages from the earlier page: the rest, which is the newest page, live again.
    newer = unescape(re.search(r'<a href="([^"]+)"[^>]*>Newer messages</a>', older_page).group(1))
    newest = client.get(newer).text
    assert texts_shown(newest) == texts and 'id="thread-poller"' in newest
    # Around one message (a search hit's link): half the page up to it, half after, both ways on.
    message_id = re.findall(r'<li id="message-(\d+)"', thread)[45]  # message 50
    around = client.get(f"{thread_path(client, '+3725550001')}?around={message_id}").text
    assert texts_shown(around) == [f"message {n}" for n in range(1, 101)]
    assert f'<li id="message-{message_id}" class="message in target' in around
    assert "Earlier messages" in around and "Newer messages" in around and 'id="thread-poller"' not in around


def test_the_list_pages_both_ways_and_newer_reaches_the_live_first_page(client, inbox):
    for n in range(105):
        inbox(body_for(sender=f"+3725550{n:03d}"))
    pages = [client.get("/").text]
    for _ in range(2):
        pages.append(
            client.get(unescape(re.search(r'<a href="([^"]+)">Older conversations</a>', pages[-1]).group(1))).text
        )
    assert senders_listed(pages[2]) == [f"+3725550{n:03d}" for n in range(4, -1, -1)]
    newer = unescape(re.search(r'<a href="([^"]+)">Newer</a>', pages[2]).group(1))
    assert senders_listed(client.get(newer).text) == senders_listed(pages[1])
    newest = client.get(unescape(re.search(r'<a href="([^"]+)">Newer</a>', pages[1]).group(1))).text
    assert senders_listed(newest) == senders_listed(pages[0]) and "data-poll" in newest
    assert "data-poll" not in pages[1] and "Newer</a>" not in newest


def test_chart_counts_messages_per_day(client, inbox):
    for _ in range(3):
        inbox(body_for())
    page = client.get("/").text
    today = clock.now().date()
    assert f"<title>{today}: 3</title>" in page
    assert f"<title>{today - timedelta(days=29)}: 0</title>" in page
    assert page.count("<rect ") == 30
    # Dates on its axis, folded away under the list, and on no other page.
    first, last = today - timedelta(days=29), today
    assert f'<p class="axis" aria-hidden="true"><span>{first:%-d %b}</span><span>{last:%-d %b}</span></p>' in page
    assert '<details class="chart-box">' in page
    for other in ("/account", "/export"):
        assert 'class="chart-box"' not in client.get(other).text, other


def test_times_are_machine_readable_utc_and_say_when_each_message_arrived(app, client, inbox):
    # The list and the thread are in the order messages arrived, so that is the time they show:
    # a message the provider stamped long ago but that arrived last is on top, at its arrival.
    arrival = iter([datetime(2024, 6, 1, 9, 0, tzinfo=UTC), datetime(2024, 6, 1, 9, 30, tzinfo=UTC)])
    app.config["CLOCK"] = lambda: arrival_now
    arrival_now = next(arrival)
    inbox(body_for(sender="+2", time="2024-06-01T08:50:00.000000Z"))
    arrival_now = next(arrival)
    inbox(body_for(sender="+1", time="2024-05-01T08:00:00.000000Z"))  # stamped a month earlier
    listing = client.get("/").text
    assert senders_listed(listing) == ["+1", "+2"]
    assert re.findall(r'<time class="when" id="[^"]+" datetime="([^"]+)"', listing) == [
        "2024-06-01T09:30:00Z",
        "2024-06-01T09:00:00Z",
    ]
    # A screen reader on a row's link hears that time, the last message and the count with it.
    descriptions = re.findall(r'class="sender"[^>]* aria-describedby="([^"]+)"', listing)
    assert len(descriptions) == 2
    for described_by in descriptions:
        assert all(f'id="{part}"' in listing for part in described_by.split()) and len(described_by.split()) == 2
    thread = client.get(thread_path(client, "+1")).text
    assert (
        '<time datetime="2024-06-01T09:30:00Z" data-sent="2024-05-01T08:00:00Z">2024-06-01 09:30 UTC</time>' in thread
    )


def test_unicode_senders_and_texts_render(client, inbox):
    inbox(body_for(sender="+3725550001", text="Tšau! Как дела? 😀"))
    assert "Tšau! Как дела? 😀" in client.get("/").text
    assert "Tšau! Как дела? 😀" in client.get(thread_path(client, "+3725550001")).text


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
    for url in ("/", thread_path(client, "+37255512345"), "/login"):
        page = client.get(url).text
        assert not re.search(r"<script(?![^>]*\ssrc=)", page)
        assert " style=" not in page and "<style" not in page and " hx-on" not in page


# --- the small things (issue 11) ------------------------------------------------------------


def test_web_addresses_in_texts_are_safe_links_and_nothing_else_is(client, inbox):
    inbox(
        body_for(
            sender="+3725550001",
            text="See https://example.com/a?b=1&c=2. Or javascript:alert(1) "
            'and <a href="http://evil.example">x</a> (http://kauplus.ee/tee)',
        )
    )
    thread = client.get(thread_path(client, "+3725550001")).text
    text = re.search(r'<p class="text" dir="auto">(.*?)</p>', thread, re.S).group(1)
    links = re.findall(r'<a href="([^"]+)" rel="noopener noreferrer nofollow" target="_blank">([^<]+)</a>', text)
    assert links == [
        ("https://example.com/a?b=1&amp;c=2", "https://example.com/a?b=1&amp;c=2"),
        ("http://evil.example", "http://evil.example"),
        ("http://kauplus.ee/tee", "http://kauplus.ee/tee"),
    ]
    assert text.count("<a ") == 3  # the customer's own <a> is text, and javascript: is no link
    assert "&lt;a href=&#34;" in text and "javascript:alert(1)" in text and "</a>. Or" in text
    assert text.endswith(
        '(<a href="http://kauplus.ee/tee" rel="noopener noreferrer nofollow" target="_blank">http://kauplus.ee/tee</a>)'
    )


def test_outside_text_is_isolated_so_it_cannot_reorder_the_page(client, inbox):
    sender, text = "+372\u202e5550001", "\u05e9\u05dc\u05d5\u05dd https://example.com"
    inbox(body_for(sender=sender, text=text))
    listing = client.get("/").text
    assert f"<bdi>{sender}</bdi></a>" in listing and '<span class="preview" dir="auto"><bdi>\u05e9' in listing
    thread = client.get(re.search(r'class="sender" href="([^"]+)"', listing).group(1)).text
    assert (
        heading(sender) in thread
        and f'<h2 id="conversation-heading" tabindex="-1"><bdi>{sender}</bdi></h2>' in thread
        and f"<title>\u2068{sender}\u2069 · " in thread
    )
    assert '<p class="text" dir="auto">\u05e9' in thread


def test_unknown_pages_are_a_styled_404_with_a_way_back(client, inbox):
    for path in ("/conversations/0", "/no-such-page", "/conversations/1/nothing"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
        assert "<h1>Page not found</h1>" in response.text and 'href="/">Back to the inbox</a>' in response.text
        assert Structure(response.text).problems() == []
    client.post("/logout", data={"csrf_token": csrf_token_of(client.get("/").text)})
    anonymous = client.get("/no-such-page")
    assert anonymous.status_code == 404 and "Page not found" in anonymous.text and "Signed in" not in anonymous.text
    # Messente's paths keep their short JSON answers.
    callback = client.get("/callbacks/no-such-thing")
    assert callback.status_code == 404 and callback.is_json and "error" in callback.json


def csrf_token_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_a_server_error_is_a_styled_500_page(database_url):
    from app.web.access import public
    from conftest import close_app, make_app

    app = make_app(database_url, PROPAGATE_EXCEPTIONS=False)

    @app.get("/callbacks/broken")
    @app.get("/broken")
    @public
    def broken():
        raise RuntimeError("a bug")

    try:
        with app.test_client() as client:
            response = client.get("/broken")
            assert response.status_code == 500 and "<h1>Something went wrong</h1>" in response.text
            assert 'href="/">Back to the inbox</a>' in response.text and "a bug" not in response.text
            callback = client.get("/callbacks/broken")
            assert callback.status_code == 500 and callback.is_json
    finally:
        close_app(app)


def test_every_page_links_a_favicon_that_is_served(app, client, inbox):
    inbox(body_for(sender="+3725550001"))
    anonymous = app.test_client()
    for who, path in (
        (client, "/"),
        (client, thread_path(client, "+3725550001")),
        (anonymous, "/login"),
        (client, "/no-such-page"),
    ):
        icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', who.get(path).text)
        assert icon, path
    with client.get(icon.group(1)) as response:
        assert response.status_code == 200 and response.mimetype == "image/svg+xml"


def test_a_list_poll_says_how_many_messages_arrived(client, inbox):
    inbox(body_for(sender="+3725550001"))
    page = client.get("/").text
    assert '<p id="announcer" class="visually-hidden" role="status" aria-live="polite"></p>' in page
    poll_url = unescape(re.search(r'hx-get="(/\?since=\d+)"', page).group(1))
    inbox(body_for(sender="+3725550002", text="one"))
    inbox(body_for(sender="+3725550001", text="two"))
    news = client.get(poll_url, headers={"HX-Request": "true"}).text
    assert '<p id="announcer" hx-swap-oob="innerHTML">2 new messages</p>' in news
    # A change that brings no message (read state) announces nothing, nor does a search.
    mark_read(client, thread_path(client, "+3725550002"))
    next_poll = unescape(re.search(r'hx-get="(/\?since=\d+)"', news).group(1))
    changed = client.get(next_poll, headers={"HX-Request": "true"})
    assert changed.status_code == 200 and "announcer" not in changed.text
    assert "announcer" not in client.get("/?q=372", headers={"HX-Request": "true"}).text


def test_rows_have_stable_ids_and_search_replaces_the_history_entry(client, inbox):
    inbox(body_for(sender="+3725550001"))
    first, second = client.get("/").text, client.get("/?q=372", headers={"HX-Request": "true"}).text
    ids = re.findall(r'id="(conversation-link-\d+)"', first)
    assert len(ids) == 1 and ids == re.findall(r'id="(conversation-link-\d+)"', second)
    search = re.search(r'<input id="q"[^>]*>', first).group(0)
    assert 'hx-replace-url="true"' in search and "hx-push-url" not in search


def test_mark_unread_is_a_secondary_action_beside_the_main_one_and_the_rare_ones_are_under_more(client, inbox):
    inbox(body_for(sender="+3725550001"))
    path = thread_path(client, "+3725550001")
    mark_read(client, path)
    page = client.get(path).text
    assert '<button type="submit" id="read-state-button" class="secondary">Mark unread</button>' in page
    header = re.search(r'<div class="thread-header">.*?(?=<div id="thread-scroll")', page, re.S).group(0)
    # One main action; opting out, the export and deleting in a disclosure that needs no script.
    assert re.search(r'<button type="submit" title="[^"]*">Mark done</button>', header)
    more = re.search(r'<details class="more-actions" id="more-actions">.*?</details>', header, re.S).group(0)
    assert 'id="opt-out"' in more and "Export…" in more
    assert 'id="status"' not in more and 'id="read-state"' not in more


def test_mark_unread_with_htmx_asks_the_list_to_follow_at_once(client, inbox):
    """As Mark done does: the list's badge and the views' counts come with a poll at once."""
    inbox(body_for(sender="+3725550001"))
    path = thread_path(client, "+3725550001")
    mark_read(client, path)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)
    unread = client.post(path + "/unread", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert unread.headers["HX-Trigger"] == "conversation-changed"
    assert 'hx-trigger="every 4s, poll-now, conversation-changed from:body"' in client.get("/").text


@pytest.mark.parametrize(
    "sender, kind",
    [
        ("+4915112345678901", "a number of 16 digits, more than a phone number has (15)"),
        ("MyShop", "a sender name"),
        ("1234", "a short code"),
    ],
)
def test_a_sender_that_cannot_be_answered_is_called_what_it_is(client, inbox, sender, kind):
    inbox(body_for(sender=sender))
    [link] = re.findall(r'<a id="conversation-link-\d+" class="sender" href="([^"]+)"', client.get("/").text)
    page = client.get(link).text
    assert f"{sender} is {kind}: it cannot receive replies." in page


@pytest.mark.parametrize(
    "query",
    [
        "/",
        "/?q=041&view=open",
        "/?q=%2B372+55%2F%3A%C3%BClle+%26x%3Dy&channel=sms&to=%2B37250000000&view=done&before=5",
    ],
)
def test_a_conversation_link_is_what_url_for_builds_with_the_lists_search_and_filters(app, query):
    from flask import url_for

    from app.inbox.routes import list_params, thread_url

    with app.test_request_context(query):
        for args in ({}, {"around": 77}, {"before": 3, "saved_reply": 2}):
            assert thread_url(12345, **args) == url_for("inbox.thread", conversation_id=12345, **list_params(), **args)


def test_a_long_last_message_is_previewed_in_as_much_as_one_row_can_show(client, inbox):
    # The row is one line (an ellipsis where it overflows): 100 characters fill the widest list
    # (a phone's, the whole screen up to 48rem); the rest would be bytes nobody sees, 50 times a page.
    text = "Tere! " + "Kirjutan pikemalt, sest eelmine kord jäi asi pooleli. " * 3
    inbox(body_for(text=text))
    preview = re.search(r'<span class="preview" dir="auto"><bdi>([^<]*)</bdi>', client.get("/").text).group(1)
    assert preview == text[:99] + "…"

"""Text search: any part of a message's text, accents and case aside, on SQLite and PostgreSQL."""

import random
import re
from html import unescape

import sqlalchemy as sa

from app import replies
from app.callbacks import ingest
from app.db import folding
from app.db.models import NUMBER_PART, Conversation, ConversationNumberPart, Message
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.inbox import queries, search
from app.ops import demo
from conftest import body_for, close_app, conversation_of, flask_command, make_app
from helpers import statements_run

TEXTS = {
    "order": "Tere! Kas minu Tellimus 4418 on juba teel? 📦",
    "cafe": "Kohtume CAFÉ Ülemistes kell 12",
    "street": "Die Straße ist gesperrt",
    "percent": "50% off_today [sale] *now*?",
    "html": "<script>alert('parcel')</script> & parcel",
    "other": "Aitäh, sain kätte 👍",
}


def store(texts: dict[str, str], sender: str = "+37255664418") -> dict[str, int]:
    """Store messages (inside an app context); their ids by key."""
    ingest.store_messages(
        [ingest.parse_payload(body_for(msg_id=key, sender=sender, text=text)) for key, text in texts.items()]
    )
    return dict(db.session.execute(sa.select(Message.msg_id, Message.id)).all())


def found(query: str, **kwargs) -> list[str]:
    hits, _ = search.search_messages(query, **kwargs)
    return [msg_id_of(hit.id) for hit in hits]


def msg_id_of(message_id: int) -> str:
    return db.session.scalar(sa.select(Message.msg_id).where(Message.id == message_id))


def test_fold_drops_accents_and_case_and_unifies_forms():
    assert folding.fold("Tellimus") == "tellimus"
    assert folding.fold("Café CRÈME") == "cafe creme"
    assert folding.fold("Ülemiste šokolaad Žürii") == "ulemiste sokolaad zurii"
    assert folding.fold("Straße") == "strasse"
    assert folding.fold("ﬁne ２０２４ İstanbul") == "fine 2024 istanbul"
    assert folding.fold("Привет Ёлка") == "привет елка"
    assert folding.fold("📦 +372 (555)") == "📦 +372 (555)"


def test_highlight_escapes_first_then_marks_every_match():
    assert search.highlight("<b>Tellimus</b> & tellimus", "TELLIMUS") == (
        "&lt;b&gt;<mark>Tellimus</mark>&lt;/b&gt; &amp; <mark>tellimus</mark>"
    )
    # The mark covers the text as written, whatever folding did to its length.
    assert search.highlight("Kohtume CAFÉ juures", "cafe") == "Kohtume <mark>CAFÉ</mark> juures"
    assert search.highlight("Die Straße ist", "strasse") == "Die <mark>Straße</mark> ist"
    assert search.highlight("cafe\u0301 (decomposed)", "CAFÉ") == "<mark>cafe\u0301</mark> (decomposed)"
    assert search.highlight("no match <i>", "xyz") == "no match &lt;i&gt;"
    # A long text is cut around its first match.
    text = "a" * 300 + " parcel " + "b" * 300
    shown = str(search.highlight(text, "parcel", length=40))
    assert shown.startswith("…") and shown.endswith("…") and "<mark>parcel</mark>" in shown


def test_finds_any_part_of_a_text_accents_and_case_aside(app):
    with app.app_context():
        store(TEXTS)
        assert found("tellimus") == ["order"]
        assert found("TELLIMUS 44") == ["order"]
        assert found("4418") == ["order"]
        assert found("limu") == ["order"]  # part of a word
        assert found("cafe") == ["cafe"]
        assert found("Ülemiste") == ["cafe"] and found("ulemiste") == ["cafe"]
        assert found("strasse") == ["street"] and found("STRASSE") == ["street"]
        assert found("parcel") == ["html"]
        assert found("<script>") == ["html"]
        assert found("📦") == []  # one character: too short for a trigram index
        assert found("teel? 📦") == ["order"]
        assert found("nothing like it") == []


def test_wildcards_in_a_query_match_themselves(app):
    with app.app_context():
        store(TEXTS)
        assert found("50% o") == ["percent"]
        assert found("% off") == ["percent"]
        assert found("ff_to") == ["percent"]
        assert found("[sale]") == ["percent"]
        assert found("*now*?") == ["percent"]
        assert found("%%%") == [] and found("___") == [] and found("***") == [] and found("???") == []


def test_under_three_characters_finds_no_messages(app):
    with app.app_context():
        store({"short": "ok ok ab"})
        assert found("ok") == [] and found("ab") == [] and found(" a ") == []
        assert not search.searchable("ok") and search.searchable("oka")


def test_newest_first_in_keyset_pages(app):
    with app.app_context():
        store({f"m{n}": f"parcel number {n}" for n in range(5)} | {"x": "nothing"})
        first, cursor = search.search_messages("parcel", limit=2)
        assert [msg_id_of(hit.id) for hit in first] == ["m4", "m3"]
        second, cursor = search.search_messages("parcel", limit=2, before=cursor)
        assert [msg_id_of(hit.id) for hit in second] == ["m2", "m1"]
        last, cursor = search.search_messages("parcel", limit=2, before=cursor)
        assert [msg_id_of(hit.id) for hit in last] == ["m0"] and cursor is None
        hit = first[0]
        assert (hit.sender, hit.direction, hit.channel, hit.text) == ("+37255664418", "in", "sms", "parcel number 4")
        assert hit.conversation_id == conversation_of("+37255664418").id


def test_replies_are_found_and_deleted_or_forgotten_messages_are_not(app, user):
    app.config.update(MESSENTE_API_USERNAME="u", MESSENTE_API_PASSWORD="p")
    with app.app_context():
        ids = store({"in": "Where is my parcel?", "keep": "parcel arrived"})
        conversation = conversation_of("+37255664418")
        reply = replies.queue_reply(conversation, "Your PARCEL left today", "sms", None, 1, "k" * 16)
        assert [hit.id for hit in search.search_messages("parcel")[0]] == [reply, ids["keep"], ids["in"]]
        assert search.search_messages("parcel")[0][0].direction == "out"

        with write_transaction() as session:
            session.execute(sa.delete(Message).where(Message.id == ids["in"]))
        search.forget_messages([reply])
        assert found("parcel") == ["keep"]
        search.forget_conversation(conversation.id)
        assert found("parcel") == []
        if db.engine.dialect.name == "sqlite":  # the index agrees with the table, entry by entry
            with write_transaction() as session:
                session.execute(sa.text("INSERT INTO message_fts (message_fts, rank) VALUES ('integrity-check', 1)"))


HINT = "Type at least three letters or digits to search messages' text: shorter searches match numbers and names only."


def hits_shown(html: str) -> list[tuple[str, str]]:
    """The search results on a page: (link, text as shown with its marks)."""
    return [
        (unescape(link), text)
        for link, text in re.findall(
            r'<li id="found-\d+" class="found">.*?<a id="found-link-\d+" class="sender" href="([^"]*)".*?'
            r'<p class="snippet" dir="auto">(.*?)</p>',
            html,
            re.S,
        )
    ]


def test_the_search_box_shows_matching_messages_each_linking_into_its_thread(app, client, auth, deliver):
    auth.login()
    for key, text in TEXTS.items():
        deliver(body_for(msg_id=key, sender="+37255664418", text=text))
    with app.app_context():
        ids = dict(db.session.execute(sa.select(Message.msg_id, Message.id)).all())
        conversation = conversation_of("+37255664418").id

    page = client.get("/?q=parcel").text
    assert hits_shown(page) == [
        (
            f"/conversations/{conversation}?q=parcel&around={ids['html']}#message-{ids['html']}",
            "<bdi>&lt;script&gt;alert(&#39;<mark>parcel</mark>&#39;)&lt;/script&gt; &amp; <mark>parcel</mark></bdi>",
        )
    ]
    # The search as you type swaps the list with its results.
    fragment = client.get("/?q=CAFE", headers={"HX-Request": "true"}).text
    assert [text for _, text in hits_shown(fragment)] == ["<bdi>Kohtume <mark>CAFÉ</mark> Ülemistes kell 12</bdi>"]
    # The link opens the thread there.
    link = hits_shown(page)[0][0].split("#")[0]
    thread = client.get(link).text
    assert f'id="message-{ids["html"]}" class="message in target' in thread

    short = client.get("/?q=44").text
    assert hits_shown(short) == []
    assert HINT in short
    assert "No message text contains “<bdi>nothing like it</bdi>”" in client.get("/?q=nothing+like+it").text
    # What no text holds is simply not found.
    for odd in ("par%00cel", "%ED%A0%80parcel", "%FF%FE%FD"):
        response = client.get("/?q=" + odd)
        assert response.status_code == 200 and hits_shown(response.text) == [], odd


def matches_shown(html: str) -> list[str]:
    """How many matching messages each result says its conversation has."""
    return re.findall(r'<span class="matches">([^<]*)</span>', html)


def test_results_come_one_per_conversation_with_its_count_and_newest_match(app, client, auth):
    auth.login()
    with app.app_context():
        ids = store({"a1": "parcel one", "a2": "no match here", "a3": "Parcel two"}, sender="+37255500001")
        ids |= store({"b1": "my parcel"}, sender="+37255500002")
        ids |= store({"a4": "third PARCEL", "a5": "thanks"}, sender="+37255500001")
        first, second = conversation_of("+37255500001").id, conversation_of("+37255500002").id
    page = client.get("/?q=parcel").text
    assert hits_shown(page) == [
        (
            f"/conversations/{first}?q=parcel&around={ids['a4']}#message-{ids['a4']}",
            "<bdi>third <mark>PARCEL</mark></bdi>",
        ),
        (
            f"/conversations/{second}?q=parcel&around={ids['b1']}#message-{ids['b1']}",
            "<bdi>my <mark>parcel</mark></bdi>",
        ),
    ]
    assert matches_shown(page) == ["3 messages", "1 message"]


def test_results_page_back_with_the_cursor_each_conversation_once(app, client, auth):
    auth.login()
    with app.app_context():  # 25 conversations, two matches each, interleaved: 0, 1, ..., 24, 0, 1, ...
        for round_ in (1, 2):
            for n in range(25):
                store({f"m{n}-{round_}": f"parcel {n} {round_}"}, sender=f"+3725550{n:04d}")
        ids = dict(db.session.execute(sa.select(Message.msg_id, Message.id)).all())
    page = client.get("/?q=parcel").text
    assert [text for _, text in hits_shown(page)] == [f"<bdi><mark>parcel</mark> {n} 2</bdi>" for n in range(24, 4, -1)]
    assert matches_shown(page) == ["2 messages"] * 20
    older = unescape(re.search(r'<a href="([^"]*found_before=[^"]*)">Older matching messages</a>', page).group(1))
    assert older == f"/?found_before={ids['m5-2']}&q=parcel"
    rest = client.get(older).text
    # The conversations shown above are not shown again for their older matches.
    assert [text for _, text in hits_shown(rest)] == [f"<bdi><mark>parcel</mark> {n} 2</bdi>" for n in range(4, -1, -1)]
    assert "Older matching messages" not in rest


def test_a_conversation_with_very_many_matches_does_not_make_a_page_read_them_all(app, monkeypatch):
    monkeypatch.setattr(search, "WALK_BATCH", 4)
    monkeypatch.setattr(search, "WALK_MOST", 8)
    with app.app_context():
        store({"old": "parcel long ago"}, sender="+37255500002")
        store({f"m{n}": f"parcel {n}" for n in range(20)}, sender="+37255500001")
        pages, cursor = [], None
        while True:
            found, cursor = search.search_conversations("parcel", limit=5, before=cursor)
            pages.append([(hit.newest.sender, hit.matches) for hit in found])
            if cursor is None:
                break
    # Each page reads at most 8 matches: the busy conversation first, then pages that skip its
    # older matches, until the other one.
    assert pages[0] == [("+37255500001", 20)] and pages[-1] == [("+37255500002", 1)]
    assert pages[1:-1] == [[]]  # 21 matches, 8 a page: three pages


def test_a_busy_conversation_shows_how_many_of_its_newest_messages_match_at_least(app, client, auth, monkeypatch):
    # Counting reads each text from the message table: a busy conversation's entry counts among
    # its newest MESSAGES_COUNTED messages from the match shown down, and says "at least" ("7+")
    # when it has older ones, whatever its older messages hold; a quieter one is counted exactly.
    monkeypatch.setattr(search, "MESSAGES_COUNTED", 10)
    monkeypatch.setattr(search, "WALK_BATCH", 4)  # the walk reads 8 matches of 43: not all of them
    monkeypatch.setattr(search, "WALK_MOST", 8)
    auth.login()
    with app.app_context():
        store({f"old{n}": f"parcel {n}" for n in range(30)}, sender="+37255500001")  # never read
        store({f"new{n}": "parcel" if n % 3 else "thanks" for n in range(12)}, sender="+37255500001")
        store({f"quiet{n}": "parcel" if n % 2 else "ok" for n in range(10)}, sender="+37255500002")
        store({"after": "thanks again"}, sender="+37255500001")  # newer than its newest match
        found, _ = search.search_conversations("parcel")
    # The busy one: its newest 10 from its newest match down (new11 ... new2) hold 7 matches.
    assert [(group.newest.sender, group.matches, group.matches_shown) for group in found] == [
        ("+37255500002", 5, "5"),
        ("+37255500001", 7, "7+"),
    ]
    assert matches_shown(client.get("/?q=parcel").text) == ["5 messages", "7+ messages"]


def test_few_matches_are_counted_exactly_as_the_walk_reads_them_all(app, client, auth, monkeypatch):
    monkeypatch.setattr(search, "MESSAGES_COUNTED", 10)
    auth.login()
    with app.app_context():
        store({"first": "parcel machine", "second": "the parcel machine"}, sender="+37255500001")
        store({f"m{n}": "thanks" for n in range(30)}, sender="+37255500001")
    with statements_run(app) as statements:
        page = client.get("/?q=parcel+machine").text
    # Far below its newest 10 messages, and counted all the same: the walk read every match.
    assert matches_shown(page) == ["2 messages"]
    assert not [statement for statement, _ in statements if "count(" in statement and "message" in statement]


def test_a_later_page_counts_from_its_own_match_down(app, monkeypatch):
    monkeypatch.setattr(search, "MESSAGES_COUNTED", 4)
    monkeypatch.setattr(search, "WALK_BATCH", 2)  # the walk never reads every match: counted in each
    with app.app_context():
        store({"a1": "parcel a", "a2": "parcel a"}, sender="+37255500001")
        store({f"b{n}": f"parcel b{n}" for n in range(6)}, sender="+37255500002")
        store({f"filler{n}": "thanks" for n in range(8)}, sender="+37255500001")  # above its matches
        first, cursor = search.search_conversations("parcel", limit=1)
        second, _ = search.search_conversations("parcel", limit=1, before=cursor)
    assert [(group.newest.sender, group.matches_shown) for group in first] == [("+37255500002", "4+")]
    # Its matches lie below its newest 4 messages: counted from the match shown, not from the top.
    assert [(group.newest.sender, group.matches_shown) for group in second] == [("+37255500001", "2")]


def test_a_page_counts_the_matches_of_its_own_conversations_only(app):
    with app.app_context():
        for n in range(30):
            store({f"m{n}": f"parcel {n}"}, sender=f"+3725550{n:04d}")
    with statements_run(app) as statements, app.app_context():
        found, cursor = search.search_conversations("parcel", limit=5)
    assert [hit.newest.text for hit in found] == [f"parcel {n}" for n in range(29, 24, -1)] and cursor
    [counts] = [parameters for statement, parameters in statements if "count(" in statement]
    assert len(counts) - 1 == 6  # the page's five and the one that shows there is more (and the pattern)


def test_queries_without_three_letters_or_digits_never_reach_the_text_index(app, client, auth):
    auth.login()
    with app.app_context():
        store({"stars": "*** [[[ !!! ab"})
    for query in ("***", "[[[", "!!!", "ab", "a-b", " x! "):
        assert not search.searchable(query)
        with statements_run(app) as statements:
            page = client.get("/", query_string={"q": query}).text
        assert HINT in page and hits_shown(page) == []
        assert statements and not [
            statement for statement, _ in statements if "message_fts" in statement or "folded_text" in statement
        ], query
        with app.app_context():
            assert search.search_conversations(query) == ([], None) and search.search_messages(query) == ([], None)
    assert search.searchable("a-b-c") and search.searchable("Ülé") and search.searchable("２０２")


def test_upgrading_fills_in_the_search_text_of_messages_already_stored(database_url):
    """A database made by the revision before text search, with messages, upgraded by init-db."""
    previous = flask_command(database_url, "db", "upgrade", "a7c41e2b9d30")
    assert previous.returncode == 0, previous.stderr
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation (id, sender, sender_key, channel, last_message_id, last_sent_at, last_text, "
                "message_count, unread_count, change_seq) VALUES (1, '+37255664418', '37255664418', 'sms', 3, "
                "'2024-06-01 08:00:00', 'x', 3, 3, 1)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, msg_id, channel, sender, text, sent_at, received_at, raw_body, "
                "change_seq) VALUES (:id, 1, :id, 'sms', '+37255664418', :text, '2024-06-01 08:00:00', "
                "'2024-06-01 08:00:00', :raw, 1)"
            ),
            [
                {"id": 1, "text": "Tellimus on teel", "raw": b"{}"},
                {"id": 2, "text": "", "raw": b"{}"},
                {"id": 3, "text": "Kohtume Café juures", "raw": b"{}"},
            ],
        )
        if connection.dialect.name == "postgresql":  # the ids chosen above are taken
            connection.execute(sa.text("SELECT setval('message_id_seq', 3), setval('conversation_id_seq', 1)"))
    engine.dispose()

    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr
    app = make_app(database_url)
    with app.app_context():
        assert [hit.id for hit in search.search_messages("tellimus")[0]] == [1]
        assert [hit.id for hit in search.search_messages("cafe")[0]] == [3]
        ingest.store_messages([ingest.parse_payload(body_for(msg_id="new", text="Uus tellimus"))])
        assert len(search.search_messages("tellimus")[0]) == 2
        if db.engine.dialect.name == "sqlite":
            with write_transaction() as session:
                session.execute(sa.text("INSERT INTO message_fts (message_fts, rank) VALUES ('integrity-check', 1)"))
    close_app(app)


# --- numbers: conversation_number_part, kept by triggers on conversation ----------------------


def number_parts() -> dict[int, set[str]]:
    parts: dict[int, set[str]] = {}
    for conversation_id, part in db.session.execute(
        sa.select(ConversationNumberPart.conversation_id, ConversationNumberPart.part)
    ):
        parts.setdefault(conversation_id, set()).add(part)
    return parts


def stretches(key: str) -> set[str]:
    return {key[n : n + NUMBER_PART] for n in range(len(key) - NUMBER_PART + 1)}


def test_number_parts_follow_conversations_made_changed_and_erased(app):
    from app.privacy import erasure

    with app.app_context():
        for n, sender in enumerate(("+37255512345", "+447700900123", "+1555", "Bolt", "+37211111111")):
            ingest.store_messages([ingest.parse_payload(body_for(msg_id=f"m{n}", sender=sender, text="hi"))])
        keys = dict(db.session.execute(sa.select(Conversation.id, Conversation.sender_key)).all())
        assert number_parts() == {id_: stretches(key) for id_, key in keys.items() if len(key) >= NUMBER_PART}
        assert number_parts()[conversation_of("+37211111111").id] == {"372111", "721111", "211111", "111111"}
        changed = conversation_of("+37255512345").id
        with write_transaction() as session:  # a key that changes (as a merge of spellings makes it)
            session.execute(sa.update(Conversation).where(Conversation.id == changed).values(sender_key="37255599999"))
        assert number_parts()[changed] == stretches("37255599999")
        erasure.erase_conversation(conversation_of("+447700900123").id)
        assert set(number_parts()) == {changed, conversation_of("+37211111111").id}


def test_six_or_more_digits_find_the_numbers_that_contain_them_from_their_middle_or_ends(app):
    rng = random.Random(29)
    with app.app_context():
        demo.seed(600, 300, rng=rng)  # the bulk path: conversations made with their messages
        keys = dict(db.session.execute(sa.select(Conversation.id, Conversation.sender_key)).all())
        assert number_parts() == {id_: stretches(key) for id_, key in keys.items() if len(key) >= NUMBER_PART}
        for key in rng.sample(sorted(keys.values()), 20):
            for query in (key[-6:], key[:6], key[3:9], key[2:10], key, "+" + key, key[4:7] + " " + key[7:11]):
                numbers, _ = queries.few_matching_conversations(query)
                wanted = queries.searched_number(query)
                assert sorted(numbers or []) == sorted(id_ for id_, each in keys.items() if wanted in each), query


def test_a_seeded_inbox_finds_numbers_by_a_few_digits_and_new_conversations_after_it(app):
    """Seeding files its conversations' number parts and text index at its end, not row by row:
    shorter queries (the conversation text index) find them too, and a conversation ingested
    after the seeding is filed as before (the triggers are back)."""
    rng = random.Random(30)
    with app.app_context():
        demo.seed(900, 400, rng=rng)
        ingest.store_messages([ingest.parse_payload(body_for(msg_id="after", sender="+37258812345", text="hi"))])
        keys = dict(db.session.execute(sa.select(Conversation.id, Conversation.sender_key)).all())
        assert number_parts() == {id_: stretches(key) for id_, key in keys.items() if len(key) >= NUMBER_PART}
        later = conversation_of("+37258812345").id
        for query in ("588123", "5881234", "881", "8812", "58812"):
            numbers, _ = queries.few_matching_conversations(query)
            assert later in (numbers or []), query
        for key in rng.sample(sorted(keys.values()), 20):
            for query in (key[4:7], key[3:8], key[-4:]):
                numbers, _ = queries.few_matching_conversations(query)
                number = queries.searched_number(query)
                wanted = sorted(id_ for id_, each in keys.items() if number in each)
                if len(wanted) > queries.FEW_MATCHES:
                    assert numbers is None, query
                else:
                    assert sorted(numbers or []) == wanted, query

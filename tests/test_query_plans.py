"""Every inbox query reads through an index: the query plans of the app's own statements.

The statements are captured (SQLAlchemy's before_cursor_execute event) while the real pages
are requested and the real query functions run, so these tests follow the queries as they
change. A plan that reads the whole message table, or sorts a whole result, fails.

SQLite runs without ANALYZE statistics, as the app's databases do, so its plans depend on
the schema alone. On PostgreSQL plans depend on statistics: there a few thousand seeded
rows, analysed, stand in for real data, for the two queries that must never grow with it.
"""

import itertools
import random
import re
from collections import Counter
from datetime import datetime

import pytest
import sqlalchemy as sa

from app import contacts, export, jobs
from app.contacts import labels
from app.db.models import Conversation, User
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.inbox import list_views, queries
from app.inbox.list_views import ListFilter
from app.ops import demo
from app.webhooks import DELIVER
from helpers import plans_of_requests, postgresql_plan, sqlite_plan, statements_run, text_index_reads, unindexed_reads

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@SQLITE
def test_inbox_pages_and_polls_use_indexes_only(app, client, auth, seeded):
    auth.login()
    thread = f"/conversations/{seeded['conversation']}"
    paths = [
        ("/", 200),  # first page, unread count, chart, latest change
        (f"/?before={seeded['cursor']}", 200),  # a later page by keyset cursor
        (f"/?since={seeded['latest_change']}", 204),  # the list's poll when nothing changed
        (f"/?since={seeded['latest_change'] - 1}", 200),  # ... and when something did
        (thread, 200),  # a thread
        (f"{thread}?before={seeded['newest']}", 200),  # earlier messages
        (f"{thread}?since={seeded['latest_change']}&since_id={seeded['newest']}", 204),  # its poll
        (f"{thread}?since=0&since_id=0", 200),  # ... when something changed: one page
    ]
    assert plans_of_requests(app, client, paths) == {}


@SQLITE
def test_pages_send_no_statement_twice_and_read_the_labels_once(app, client, auth, seeded):
    """Each page asks the database for each thing once: the team's time zone (a thread's snooze
    menu, presets and times), the active accounts (its owner menu and the reply box's mentions),
    the labels (the list's label filter and the header's label menu), whatever the page shows."""
    auth.login()
    with app.app_context():
        labels.create("Refund")
    thread = f"/conversations/{seeded['conversation']}"
    for path in ("/", f"/?before={seeded['cursor']}", thread, f"{thread}?before={seeded['newest']}"):
        client.get(path)  # opening a thread reads its notifications: what a second look does not
        with statements_run(app) as statements:
            assert client.get(path).status_code == 200, path
        sent = Counter((statement, repr(parameters)) for statement, parameters in statements)
        assert {statement: times for (statement, _), times in sent.items() if times > 1} == {}, path
        label_reads = [statement for statement, _ in statements if re.search(r"\bFROM label\b(?! JOIN)", statement)]
        assert len(label_reads) == 1, (path, label_reads)


@SQLITE
def test_search_finds_few_conversations_through_the_text_index_never_in_messages(app, client, auth, seeded):
    # LIKE '%digits%' can use no B-tree index: the conversation text index (FTS5 trigram) finds
    # the ids of a number or name that few conversations match, and only those are read and
    # sorted into list order (at most FEW_MATCHES); no conversation is walked, no message read.
    auth.login()
    digits = re.sub(r"\D", "", seeded["sender"])[3:8]
    paths = [(f"/?q={digits}", 200), (f"/?q={digits}&before={seeded['cursor']}", 200), ("/?q=no-such-sender", 200)]
    for (path, statement), bad in plans_of_requests(app, client, paths).items():
        assert bad == text_index_reads(bad), (path, statement, bad)
    with statements_run(app) as statements, app.app_context():
        queries.conversations(q=digits)
    [(found, found_parameters), (page, page_parameters)] = statements
    assert any("conversation_fts VIRTUAL TABLE INDEX" in line for line in sqlite_plan(app, found, found_parameters))
    page_plan = sqlite_plan(app, page, page_parameters)
    assert not [line for line in page_plan if line.startswith("SCAN conversation")], page_plan
    assert "SEARCH conversation USING INTEGER PRIMARY KEY (rowid=?)" in page_plan


@SQLITE
def test_six_digits_find_numbers_by_one_key_lookup_and_the_view_reads_them_by_id(app, client, auth, seeded):
    # Six digits from the middle of a number: one equality lookup in conversation_number_part (its
    # last six characters), never the trigram lists every number shares ("372"); then, in the Open
    # view as in All, the few found are read by id, not by walking the view's index.
    auth.login()
    key = re.sub(r"\D", "", seeded["sender"])
    # (Six digits that start with 0 are read as a number dialled with its trunk 0: five digits.)
    digits = next(key[n : n + 6] for n in range(3, len(key) - 5) if key[n] != "0")
    for view in (None, ListFilter("open"), ListFilter("done")):
        with statements_run(app) as statements, app.app_context():
            page = queries.conversations(q=digits, list_filter=view)
        if view is None:
            assert seeded["sender"] in [c.sender for c in page.rows]
        [(found, found_parameters), (rows, rows_parameters)] = statements
        found_plan = sqlite_plan(app, found, found_parameters)
        assert "SEARCH conversation_number_part USING PRIMARY KEY (part=?)" in found_plan, "\n".join(found_plan)
        assert not [line for line in found_plan if "conversation_fts VIRTUAL TABLE INDEX 0:G0" in line], found_plan
        rows_plan = sqlite_plan(app, rows, rows_parameters)
        assert "SEARCH conversation USING INTEGER PRIMARY KEY (rowid=?)" in rows_plan, rows_plan
        # e.g. "SEARCH conversation USING INDEX ix_conversation_status_last_message_id (status=?)": a
        # walk of every conversation in the view (a lookup by last_message_id=? is one row each).
        walks = [line for line in rows_plan if re.search(r"INDEX \w+ \((?!last_message_id)[a-z_]+=\?\)$", line)]
        assert walks == [], rows_plan


def test_a_search_no_number_or_name_matches_reads_no_conversation(app, seeded):
    # A word from message texts usually matches no number or name: its list must cost nothing,
    # not a walk through every conversation in the view.
    with statements_run(app) as statements, app.app_context():
        page = queries.conversations(q="no-such-sender")
    assert page.rows == [] and page.live and len(statements) == 1, statements  # the trigram lookup alone


@SQLITE
def test_search_under_three_characters_walks_an_index_never_the_table(app, client, auth, seeded):
    # A trigram index cannot narrow two characters down: the search walks the conversations in
    # list order, stopping at the page size, but reads only an index (covering), not table rows.
    auth.login()
    assert plans_of_requests(app, client, [("/?q=37", 200)], scannable=("conversation",)) == {}
    with statements_run(app) as statements, app.app_context():
        queries.conversations(q="37")
    [(statement, parameters)] = statements
    conversation_scans = [
        line for line in sqlite_plan(app, statement, parameters) if line.startswith("SCAN conversation")
    ]
    assert conversation_scans and all("COVERING INDEX" in line for line in conversation_scans)


def indexes_used(app, plan: list[str]) -> list[tuple[str, ...]]:
    """The columns of each index the plan reads (constraint indexes have generated names)."""
    used = []
    with app.app_context():
        for line in plan:
            index = re.search(r"USING (?:COVERING )?INDEX (\w+)", line)
            if index:
                info = db.session.connection().exec_driver_sql(f"PRAGMA index_info({index.group(1)})")
                used.append(tuple(row[2] for row in info))
    return used


@SQLITE
def test_query_functions_use_the_intended_indexes(app, seeded):
    conversation_id = seeded["conversation"]
    with app.app_context():
        conversation = contacts.conversation(conversation_id)
        db.session.expunge(conversation)  # read once, outside the statements captured
    calls = {
        "thread": (lambda: queries.open_thread(conversation), ("conversation_id", "id")),
        "thread poll": (
            lambda: queries.poll_thread(conversation, seeded["latest_change"] - 1, 0, seeded["newest"]),
            ("conversation_id", "change_seq"),
        ),
        "latest change": (lambda: queries.latest_change(), ("change_seq",)),
        "export of a conversation": (
            lambda: list(export.csv_chunks(export.export_query(conversation_id=conversation_id))),
            ("conversation_id", "id"),
        ),
        "unread count": (lambda: queries.unread_conversations(), ("unread_count",)),
        "first page": (lambda: queries.conversations(), ("last_message_id", "sender_key")),
        "later page": (lambda: queries.conversations(before=seeded["cursor"]), ("last_message_id", "sender_key")),
    }
    for name, (call, columns) in calls.items():
        with statements_run(app) as statements, app.app_context():
            call()
        [(statement, parameters)] = statements
        plan = sqlite_plan(app, statement, parameters)
        assert unindexed_reads(plan) == [], name
        assert indexes_used(app, plan) == [columns], f"{name}: {plan}"


@SQLITE
def test_the_full_export_is_the_one_read_of_every_message(app, seeded):
    # The check above must be able to fail: the whole-table export is a scan, and is seen as one.
    with statements_run(app) as statements, app.app_context():
        list(export.csv_chunks(export.export_query()))
    [(statement, parameters)] = statements
    assert unindexed_reads(sqlite_plan(app, statement, parameters)) == ["SCAN message"]


@POSTGRESQL
def test_postgresql_poll_and_thread_use_indexes(app, seeded):
    with app.app_context():
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
    with app.app_context():
        conversation = contacts.conversation(seeded["conversation"])
        db.session.expunge(conversation)
    for name, call in {
        "poll": lambda: queries.latest_change(),
        "thread": lambda: queries.open_thread(conversation),
        "thread poll": lambda: queries.poll_thread(conversation, seeded["latest_change"] - 1, 0, seeded["newest"]),
    }.items():
        with statements_run(app) as statements, app.app_context():
            call()
        [(statement, parameters)] = statements
        plan = postgresql_plan(app, statement, parameters)
        assert "Index" in plan and "Seq Scan" not in plan, f"{name}:\n{plan}"


# --- text search: the databases' trigram indexes, never a walk through the messages ----------------


@pytest.fixture
def texts(app):
    """Two thousand messages, one of them the only one to hold "zqx"."""
    from app.callbacks import ingest
    from conftest import body_for

    words = ["tere", "tellimus", "pakk", "order", "parcel", "homme", "kell", "aitäh", "café"]
    rng = random.Random(7)
    bodies = [
        body_for(sender=f"+3725{n % 300:07d}", text=" ".join(rng.choices(words, k=6)) + f" {n}") for n in range(2000)
    ]
    bodies[1234] = body_for(sender="+37255664418", text="Kas zqx jõudis kohale?")
    with app.app_context():
        ingest.store_messages([ingest.parse_payload(body) for body in bodies])


def search_statement(app, query: str):
    from app.inbox import search

    with statements_run(app) as statements, app.app_context():
        hits, _ = search.search_messages(query)
    [(statement, parameters)] = statements
    return hits, statement, parameters


@SQLITE
def test_sqlite_text_search_reads_the_fts_index_then_messages_by_key(app, texts):
    for query in ("zqx", "tellimus", "café"):  # rare, common, folded
        hits, statement, parameters = search_statement(app, query)
        assert hits
        plan = sqlite_plan(app, statement, parameters)
        assert any(re.match(r"SCAN message_fts VIRTUAL TABLE INDEX \d+:G", line) for line in plan), plan
        assert "SEARCH message USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        assert unindexed_reads(plan, scannable=("message_fts",)) == [], plan


@POSTGRESQL
def test_postgresql_text_search_uses_the_trigram_index(app, texts):
    with app.app_context():
        # As autovacuum leaves it: the index's pending list of new entries merged, statistics fresh.
        db.session.execute(sa.text("SELECT gin_clean_pending_list('ix_message_folded_text_trgm')"))
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
    hits, statement, parameters = search_statement(app, "zqx")
    assert [hit.text for hit in hits] == ["Kas zqx jõudis kohale?"]
    plan = postgresql_plan(app, statement, parameters)
    assert "Bitmap Index Scan on ix_message_folded_text_trgm" in plan and "Seq Scan on message" not in plan, plan


def grouped_search_statements(app, query: str):
    from app.inbox import search

    with statements_run(app) as statements, app.app_context():
        found, _ = search.search_conversations(query, limit=20)
    return found, statements


@SQLITE
def test_sqlite_search_by_conversation_walks_the_fts_index_and_counts_in_each_conversation(app, texts):
    from app.inbox import search

    for query in ("zqx", "tellimus"):  # one conversation; many (a walk, then more than one batch of counts)
        found, statements = grouped_search_statements(app, query)
        assert found
        *walks_and_counts, hits = statements
        walks = [each for each in walks_and_counts if "message_fts" in each[0]]
        counts = [each for each in walks_and_counts if "count(" in each[0]]
        assert walks and len(walks) + len(counts) == len(walks_and_counts)
        # A rare word's few matches are all read by the walk, which counts them itself.
        assert bool(counts) == (query == "tellimus"), counts
        for statement, parameters in walks:
            plan = sqlite_plan(app, statement, parameters)
            assert any(re.match(r"SCAN message_fts VIRTUAL TABLE INDEX \d+:G", line) for line in plan), plan
            assert unindexed_reads(plan, scannable=("message_fts",)) == [], plan
        for statement, parameters in counts:
            # From each shown message's row, at most MESSAGES_COUNTED of its conversation's messages
            # at or below it, a stretch of their index bounded by ids (its oldest found on the index
            # alone), and whether there are more, from the index alone.
            plan = sqlite_plan(app, statement, parameters)
            assert [re.sub(r"anon_\d+", "anon", line) for line in plan] == [
                "SEARCH shown USING INTEGER PRIMARY KEY (rowid=?)",
                "CORRELATED SCALAR SUBQUERY 2",
                "SEARCH message USING INDEX ix_message_conversation_id_id (conversation_id=? AND id>? AND id<?)",
                "CORRELATED SCALAR SUBQUERY 1",
                "SEARCH message USING COVERING INDEX ix_message_conversation_id_id (conversation_id=? AND id<?)",
                "CORRELATED SCALAR SUBQUERY 4",
                "CO-ROUTINE anon",
                "SEARCH message USING COVERING INDEX ix_message_conversation_id_id (conversation_id=? AND id<?)",
                "SCAN anon",
            ], plan
            counted = search.MESSAGES_COUNTED
            assert f"LIMIT 1 OFFSET {counted - 1}" in statement and f"LIMIT {counted + 1} OFFSET 0" in statement
        assert sqlite_plan(app, *hits) == [
            "SEARCH message USING INTEGER PRIMARY KEY (rowid=?)",
            "SEARCH conversation USING INTEGER PRIMARY KEY (rowid=?)",
        ]


@POSTGRESQL
def test_postgresql_search_by_conversation_uses_the_trigram_index_then_each_conversation(app, texts):
    with app.app_context():
        db.session.execute(sa.text("SELECT gin_clean_pending_list('ix_message_folded_text_trgm')"))
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
    found, [walk, hits] = grouped_search_statements(app, "zqx")  # its one match counted by the walk
    assert [(group.newest.text, group.matches) for group in found] == [("Kas zqx jõudis kohale?", 1)]
    plan = postgresql_plan(app, *walk)
    assert "Bitmap Index Scan on ix_message_folded_text_trgm" in plan and "Seq Scan on message" not in plan, plan
    # A common word: each conversation's newest messages from the one shown down, by their index,
    # never every match through the trigram index.
    found, statements = grouped_search_statements(app, "tellimus")
    counts = [each for each in statements if "count(" in each[0]]
    assert found and counts
    for statement in counts:
        plan = postgresql_plan(app, *statement)
        assert plan.count("Index Cond: ((conversation_id = shown.conversation_id) AND (id <= shown.id))") == 2, plan
        assert "Seq Scan" not in plan and "ix_message_folded_text_trgm" not in plan, plan
        # Texts read only between the shown message and the oldest counted, whatever the plan:
        # asked for "the newest 50 texts", PostgreSQL (expecting a conversation's average few
        # messages) read a busy one's every text.
        bounded = "Index Cond: ((conversation_id = shown.conversation_id) AND (id <= shown.id) AND (id >= COALESCE("
        assert bounded in plan, plan


def test_searches_without_three_letters_or_digits_never_use_a_text_index(app, client, auth, texts):
    """`***`, `[[[`, `!!!` hold no trigram: asked of the text index, they read all of it (or the
    message table on PostgreSQL). They look up numbers and names only, walking the list."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()
    auth.login()
    for query in ("***", "[[[", "!!!", "ab"):
        with statements_run(app) as statements:
            assert client.get("/", query_string={"q": query}).status_code == 200
        for statement, parameters in statements:
            if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
                plan = " ".join(sqlite_plan(app, statement, parameters))
                assert "message_fts" not in plan and "conversation_fts" not in plan, (query, statement, plan)
            else:
                plan = postgresql_plan(app, statement, parameters)
                assert "trgm" not in plan and "Seq Scan on message" not in plan, (query, statement, plan)


# --- PostgreSQL: list pages and search by number or name, on thousands of conversations --------


@pytest.fixture
def many_senders(app):
    """Twenty thousand messages from five thousand senders, half of them named; analysed."""
    with app.app_context():
        demo.seed(20_000, 5_000, rng=random.Random(8))
        db.session.execute(
            sa.text(
                "UPDATE conversation SET contact_name = 'Kask ' || id, contact_key = 'kask ' || id WHERE id % 2 = 0"
            )
        )
        named = db.session.scalar(sa.select(Conversation).where(Conversation.id % 2 == 1).offset(1_250).limit(1))
        db.session.commit()
        contacts.set_contact(named.id, "Ülle Tamm", "")
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        return {"sender": named.sender, "name": "ülle", "deep": queries.conversations(limit=2_000).older}


def unbounded_message_walks(plan: str) -> list[str]:
    """Reads of `message` with no index condition: walks of its key from one end."""
    lines = plan.splitlines()
    return [
        line
        for n, line in enumerate(lines)
        if re.search(r"Scan\b.* on message\b", line) and not (n + 1 < len(lines) and "Index Cond" in lines[n + 1])
    ]


@POSTGRESQL
def test_postgresql_list_pages_start_their_walk_at_the_cursor(app, many_senders):
    # The first page may walk the message key from the newest end: it stops after a page.
    for page, bounded in (
        (lambda: queries.conversations(), False),
        (lambda: queries.conversations(before=many_senders["deep"]), True),
        (lambda: queries.conversations(after=many_senders["deep"]), True),
    ):
        with statements_run(app) as statements, app.app_context():
            page()
        for statement, parameters in statements:
            plan = postgresql_plan(app, statement, parameters)
            assert "Seq Scan" not in plan, plan
            assert not bounded or unbounded_message_walks(plan) == [], plan


@POSTGRESQL
def test_postgresql_search_finds_numbers_and_names_through_their_trigram_indexes(app, many_senders):
    digits = re.sub(r"\D", "", many_senders["sender"])[-5:]  # under six: pg_trgm (six: the test below)
    for query, index in (
        (digits, "ix_conversation_sender_key_trgm"),
        (many_senders["name"], "ix_conversation_contact_key_trgm"),
    ):
        with statements_run(app) as statements, app.app_context():
            page = queries.conversations(q=query)
        assert many_senders["sender"] in [c.sender for c in page.rows]
        [(found, found_parameters), (rows, rows_parameters)] = statements
        found_plan, rows_plan = (
            postgresql_plan(app, found, found_parameters),
            postgresql_plan(app, rows, rows_parameters),
        )
        assert f"Bitmap Index Scan on {index}" in found_plan and "Seq Scan" not in found_plan, found_plan
        assert "Seq Scan" not in rows_plan and unbounded_message_walks(rows_plan) == [], rows_plan


@POSTGRESQL
def test_postgresql_six_digits_find_numbers_by_one_key_lookup(app, many_senders):
    # Six digits from the middle of a number, or its end: an equality lookup in
    # conversation_number_part's key, not pg_trgm's lists (which grow with the senders); in the
    # Open view the few found are read by id.
    key = re.sub(r"\D", "", many_senders["sender"])
    middle = next(key[n : n + 6] for n in range(3, len(key) - 5) if key[n] != "0")  # 0...: five digits
    for digits in (middle, key[-6:]):
        with statements_run(app) as statements, app.app_context():
            page = queries.conversations(q=digits, list_filter=ListFilter("open"))
        assert many_senders["sender"] in [c.sender for c in page.rows]
        [(found, found_parameters), (rows, rows_parameters)] = statements
        found_plan = postgresql_plan(app, found, found_parameters)
        assert "pk_conversation_number_part" in found_plan, found_plan
        assert "ix_conversation_sender_key_trgm" not in found_plan and "Seq Scan" not in found_plan, found_plan
        rows_plan = postgresql_plan(app, rows, rows_parameters)
        assert "Seq Scan" not in rows_plan and unbounded_message_walks(rows_plan) == [], rows_plan


@POSTGRESQL
def test_postgresql_search_matching_many_numbers_walks_them_apart_from_names(app, many_senders):
    # Many numbers match (the country code): they walk the list in order, on the view's index
    # alone, and the few names found join that page. One OR with the names would test each
    # walked conversation against them, reading its row.
    with app.app_context():
        everyone = db.session.scalars(sa.select(Conversation).order_by(Conversation.last_message_id.desc())).all()
    with statements_run(app) as statements, app.app_context():
        page = queries.conversations(q="372", list_filter=ListFilter("open"))
    matching = [c.id for c in everyone if "372" in c.sender_key or "372" in (c.contact_key or "")]
    assert [c.id for c in page.rows] == matching[:50]
    [_, (statement, parameters)] = statements  # the trigram look-up, then the page
    plan = postgresql_plan(app, statement, parameters)
    assert "SubPlan" not in plan, plan
    assert re.search(r"Index (Only )?Scan Backward using ix_conversation_status_last_message_id", plan), plan
    with app.app_context():  # and the pages after it, both ways
        older = queries.conversations(q="372", before=page.older, list_filter=ListFilter("open"))
        back = queries.conversations(q="372", after=older.newer, list_filter=ListFilter("open"))
    assert [c.id for c in older.rows] == matching[50:100]
    assert [c.id for c in back.rows] == matching[:50]


# --- views by owner: the owner's conversations, newest first, however deep the page -----------


def owned_by_one_person(app, every: int) -> int:
    """alice owns every `every`-th conversation (as ids go); her id."""
    from conftest import add_user

    with app.app_context():
        add_user()
        alice = db.session.scalar(sa.select(User.id).where(User.username == "alice"))
        db.session.execute(sa.update(Conversation).where(Conversation.id % every == 0).values(assignee_id=alice))
        db.session.commit()
    return alice


@SQLITE
def test_views_by_owner_walk_the_owners_index_from_the_cursor_and_count_from_it(app, seeded):
    # Mine or a teammate's, alone or with a status view, on any page: a walk of that person's
    # conversations on (assignee_id, last_message_id), never a sort; their count reads it alone.
    alice = owned_by_one_person(app, 3)
    for list_filter in (ListFilter("all", assignee="me", me=alice), ListFilter("open", assignee=str(alice))):
        for cursor in ({}, {"before": seeded["cursor"]}, {"after": seeded["cursor"] - 30}):
            with statements_run(app) as statements, app.app_context():
                queries.conversations(list_filter=list_filter, **cursor)
            pages = [each for each in statements if "FROM conversation" in each[0]]  # not the owners' names
            assert pages
            for statement, parameters in pages:
                plan = sqlite_plan(app, statement, parameters)
                assert unindexed_reads(plan) == [], plan
                assert indexes_used(app, plan)[0] == ("assignee_id", "last_message_id"), plan
    with statements_run(app) as statements, app.app_context():
        list_views.owner_counts(ListFilter("all", me=alice), latest_change=-1)
    by_owner = [plan for plan in (sqlite_plan(app, *each) for each in statements) if "assignee_id=?" in " ".join(plan)]
    # Mine (assignee_id = alice) and Unassigned (assignee_id IS NULL): each from the index alone.
    index_alone = "SEARCH conversation USING COVERING INDEX ix_conversation_assignee_id_last_message_id (assignee_id=?)"
    assert by_owner == [[index_alone], [index_alone]]


@POSTGRESQL
def test_postgresql_views_by_owner_use_the_owners_index(app, many_senders):
    alice = owned_by_one_person(app, 5)  # 1,000 of 5,000 conversations: too many to read and sort
    with app.app_context():
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
    # Mine alone, and Mine within Open (the default view: its status and snooze tested on each).
    for view, cursor in itertools.product(("all", "open"), ({}, {"before": many_senders["deep"]})):
        with statements_run(app) as statements, app.app_context():
            queries.conversations(list_filter=ListFilter(view, assignee="me", me=alice), **cursor)
        pages = [each for each in statements if "FROM conversation" in each[0]]  # not the owners' names
        assert pages
        for statement, parameters in pages:
            plan = postgresql_plan(app, statement, parameters)
            assert "ix_conversation_assignee_id_last_message_id" in plan and "Seq Scan" not in plan, plan
            assert "Sort" not in plan, plan


@SQLITE
def test_job_runners_find_due_work_and_the_dispatch_its_jobs_through_indexes(app):
    """A runner's look for due work, less the kinds at their limit (webhook deliveries), and the
    webhook dispatch's one read of every endpoint's job rows: through the job table's indexes."""
    now = datetime(2026, 1, 5, 9, 0)
    with app.app_context():
        db.create_all()
        with write_transaction():
            for n in range(20):
                jobs.enqueue(DELIVER, {"endpoint": n}, key=f"webhook:{n}", due_at=now)
    with statements_run(app) as statements, app.app_context():
        jobs.find_due(now, limit=4, skip_kinds=[DELIVER])
        with write_transaction():
            jobs.enqueue_once_each(DELIVER, {f"webhook:{n}": ({"endpoint": n}, now) for n in range(30)})
    reads = [(statement, parameters) for statement, parameters in statements if statement.lstrip().startswith("SELECT")]
    assert len(reads) == 2, reads
    for statement, parameters in reads:
        plan = sqlite_plan(app, statement, parameters)
        assert unindexed_reads(plan) == [], plan
        assert any("USING INDEX ix_job_" in line or "USING COVERING INDEX ix_job_" in line for line in plan), plan

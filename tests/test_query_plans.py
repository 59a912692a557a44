"""Every inbox query reads through an index: the query plans of the app's own statements.

The statements are captured (SQLAlchemy's before_cursor_execute event) while the real pages
are requested and the real query functions run, so these tests follow the queries as they
change. A plan that reads the whole message table, or sorts a whole result, fails.

SQLite runs without ANALYZE statistics, as the app's databases do, so its plans depend on
the schema alone. On PostgreSQL plans depend on statistics: there a few thousand seeded
rows, analysed, stand in for real data, for the two queries that must never grow with it.
"""
import random
import re
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from app import demo, export, queries
from app.extensions import db
from app.models import Conversation

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def seeded(app):
    """Demo data; the busiest sender (thread) and the cursor of page 2."""
    with app.app_context():
        demo.seed(3_000, 150, rng=random.Random(6))
        busiest = db.session.scalar(sa.select(Conversation.sender).order_by(Conversation.message_count.desc()))
        _, cursor = queries.conversations(limit=50)
        newest = queries.newest_message_id()
    return {"sender": busiest, "cursor": cursor, "newest": newest}


@contextmanager
def statements_run(app):
    """The SQL statements (and their parameters) the app sends to the database in the block."""
    with app.app_context():
        engine = db.engine
    statements = []

    def capture(_connection, _cursor, statement, parameters, _context, _executemany):
        if re.match(r"\s*(SELECT|UPDATE|INSERT|DELETE)\b", statement, re.IGNORECASE):
            statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


def sqlite_plan(app, statement: str, parameters) -> list[str]:
    with app.app_context():
        rows = db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return [row[-1] for row in rows]


def unindexed_reads(plan: list[str], scannable: tuple[str, ...] = ()) -> list[str]:
    """Plan lines that read a whole table or sort a whole result.

    "SCAN t USING INDEX" walks an index in order and stops at the LIMIT: fine, except on
    message, which only a full export may read from end to end.
    """
    bad = []
    for line in plan:
        scan = re.match(r"SCAN (\w+)", line)
        if scan and scan.group(1) not in scannable and (scan.group(1) == "message" or "INDEX" not in line):
            bad.append(line)
        if "TEMP B-TREE" in line:
            bad.append(line)
    return bad


def plans_of_requests(app, client, paths: list[str], scannable: tuple[str, ...] = ()) -> dict:
    """For each path, the plan lines of its statements that are not index reads."""
    found = {}
    for path in paths:
        with statements_run(app) as statements:
            assert client.get(path).status_code in (200, 204), path
        assert statements, f"{path} ran no query"
        for statement, parameters in statements:
            bad = unindexed_reads(sqlite_plan(app, statement, parameters), scannable)
            if bad:
                found[(path, " ".join(statement.split()))] = bad
    return found


@SQLITE
def test_inbox_pages_and_polls_use_indexes_only(app, client, auth, seeded):
    auth.login()
    sender = seeded["sender"]
    paths = [
        "/",  # first page, unread count, chart, newest id
        f"/?before={seeded['cursor']}",  # a later page by keyset cursor
        f"/?since={seeded['newest']}",  # the list's poll when nothing changed
        f"/?since={seeded['newest'] - 5}",  # ... and when something did
        f"/conversations/{sender}",  # a thread (marks it read)
        f"/conversations/{sender}?before={seeded['newest']}",  # earlier messages
        f"/conversations/{sender}?since={seeded['newest']}",  # the thread's poll
    ]
    assert plans_of_requests(app, client, paths) == {}


@SQLITE
def test_search_tests_the_sender_key_in_an_index_never_in_messages(app, client, auth, seeded):
    # LIKE '%digits%' can use no B-tree index: the search walks the conversations in list
    # order, stopping at the page size, but reads only an index (covering), not table rows.
    auth.login()
    digits = re.sub(r"\D", "", seeded["sender"])[3:8]
    paths = [f"/?q={digits}", f"/?q={digits}&before={seeded['cursor']}", "/?q=no-such-sender"]
    assert plans_of_requests(app, client, paths, scannable=("conversation",)) == {}
    with statements_run(app) as statements, app.app_context():
        queries.conversations(q=digits)
    [(statement, parameters)] = statements
    conversation_scans = [line for line in sqlite_plan(app, statement, parameters)
                          if line.startswith("SCAN conversation")]
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
    sender = seeded["sender"]
    calls = {
        "thread": (lambda: queries.thread(sender), ("sender", "id")),
        "thread since": (lambda: queries.thread(sender, after=seeded["newest"] - 100), ("sender", "id")),
        "newest of a sender": (lambda: queries.newest_message_id(sender), ("sender", "id")),
        "export of a sender": (lambda: list(export.csv_chunks(export.export_query(sender=sender))),
                               ("sender", "id")),
        "unread count": (lambda: queries.unread_conversations(), ("unread_count",)),
        "first page": (lambda: queries.conversations(), ("last_message_id",)),
        "later page": (lambda: queries.conversations(before=seeded["cursor"]), ("last_message_id",)),
    }
    for name, (call, columns) in calls.items():
        with statements_run(app) as statements, app.app_context():
            call()
        [(statement, parameters)] = statements
        plan = sqlite_plan(app, statement, parameters)
        assert unindexed_reads(plan) == [], name
        assert indexes_used(app, plan) == [columns], f"{name}: {plan}"


@SQLITE
def test_newest_message_id_reads_one_row_of_the_primary_key(app, seeded):
    with statements_run(app) as statements, app.app_context():
        assert queries.newest_message_id() == seeded["newest"]
    [(statement, parameters)] = statements
    assert sqlite_plan(app, statement, parameters) == ["SEARCH message"]  # max(rowid): one B-tree step


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
    sender = seeded["sender"]
    for name, call in {"poll": lambda: queries.newest_message_id(),
                       "thread": lambda: queries.thread(sender)}.items():
        with statements_run(app) as statements, app.app_context():
            call()
        [(statement, parameters)] = statements
        with app.app_context():
            plan = "\n".join(row[0] for row in db.session.connection().exec_driver_sql(
                "EXPLAIN " + statement, parameters))
        assert "Index" in plan and "Seq Scan on message" not in plan, f"{name}:\n{plan}"

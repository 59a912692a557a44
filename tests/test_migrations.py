"""Migrations: an empty database of either kind upgraded with them has exactly the models' schema.

The upgrades run as users run them, `flask --app app init-db` in its own process.
"""

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db.models import Conversation, ConversationRecipient, DeadLetter, Message, OptOut
from app.extensions import db
from conftest import ROOT, body_for, close_app, conversation_of, flask_command, fresh_database, make_app, signed_headers

TRIGRAM_INDEX = "ix_conversation_sender_key_trgm"  # declared for PostgreSQL only
TEXT_TRIGRAM_INDEX = "ix_message_folded_text_trgm"  # PostgreSQL's; SQLite has the message_fts table
NAME_TRIGRAM_INDEX = "ix_conversation_contact_key_trgm"  # PostgreSQL's; SQLite has the conversation_fts table


@pytest.fixture
def reference_url(database_url, tmp_path):
    """A second empty database of the same kind, for the schema `create_all` makes from the models."""
    with fresh_database(database_url.split(":")[0].split("+")[0], tmp_path, "reference") as url:
        yield url


@pytest.fixture
def engine():
    """Open engines by URL; all are disposed at the end, whatever happened."""
    opened = []

    def open_engine(url: str) -> sa.Engine:
        opened.append(sa.create_engine(url))
        return opened[-1]

    yield open_engine
    for each in opened:
        each.dispose()


def schema_of(connection: sa.Connection) -> dict:
    """Tables, columns, constraints and indexes as the database itself describes them."""
    if connection.dialect.name == "sqlite":
        # A table rebuilt by a migration keeps the text of its CREATE TABLE as written there,
        # so tables are described by what SQLite reports of them; indexes by their SQL.
        tables = (
            connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version' ORDER BY name"
            )
            .scalars()
            .all()
        )

        def pragma(name, table):
            return connection.exec_driver_sql(f'PRAGMA {name}("{table}")').all()

        return {
            "tables": {
                table: {
                    "columns": pragma("table_xinfo", table),
                    "foreign_keys": sorted(row[2:] for row in pragma("foreign_key_list", table)),
                    "indexes": sorted(
                        (name, unique, origin, partial, pragma("index_info", name))
                        for _, name, unique, origin, partial in pragma("index_list", table)
                    ),
                }
                for table in tables
            },
            # Indexes, triggers (text search's) and the FTS5 table by the SQL that made them.
            # Which tables never reuse an id (AUTOINCREMENT, said only in the table's SQL).
            "autoincrement": connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%' ORDER BY name"
            )
            .scalars()
            .all(),
            "index_sql": connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE (type IN ('index', 'trigger') OR name IN ('message_fts', 'conversation_fts')) "
                "AND sql IS NOT NULL ORDER BY name"
            ).all(),
        }
    schema = connection.scalar(sa.text("SELECT current_schema()"))

    def rows(sql: str) -> list[tuple]:
        return [
            tuple(str(value).replace(f"{schema}.", "") for value in row) for row in connection.execute(sa.text(sql))
        ]

    return {
        "columns": rows("""
            SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
                   column_default
            FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name != 'alembic_version'
            ORDER BY 1, 2"""),
        "constraints": rows("""
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint
            WHERE connamespace = current_schema()::regnamespace AND conname NOT LIKE 'alembic%'
            ORDER BY 1, 2"""),
        "indexes": rows("""
            SELECT tablename, indexname, indexdef FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename != 'alembic_version'
            ORDER BY 1, 2"""),
    }


def test_upgrading_an_empty_database_gives_exactly_the_models_schema(database_url, reference_url, engine):
    result = flask_command(database_url, "init-db")
    assert result.returncode == 0, result.stderr

    migrated, reference = engine(database_url), engine(reference_url)
    db.metadata.create_all(reference)
    dialect = migrated.dialect.name

    def include(_object, name, type_, _reflected, _compare_to) -> bool:
        if type_ == "table" and name.startswith(("message_fts", "conversation_fts")):
            return False  # SQLite's FTS5 table and its own tables: made by DDL, compared by schema_of
        if type_ == "table" and name == "presence":
            return (
                False  # PostgreSQL's UNLOGGED presence table, not a model (app/db/presence.py): compared by schema_of
            )
        return not (
            type_ == "index"
            and name in (TRIGRAM_INDEX, TEXT_TRIGRAM_INDEX, NAME_TRIGRAM_INDEX)
            and dialect != "postgresql"
        )

    with migrated.connect() as connection, reference.connect() as expected:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include})
        assert compare_metadata(context, db.metadata) == []
        # Alembic compares columns and index columns; the catalogs also show index methods,
        # operator classes, partial-index conditions and sequences.
        assert schema_of(connection) == schema_of(expected)
        if dialect == "postgresql":
            indexes = dict(
                connection.execute(
                    sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
                ).all()
            )
            assert "USING gin (sender_key gin_trgm_ops)" in indexes[TRIGRAM_INDEX]
            assert "USING gin (folded_text gin_trgm_ops)" in indexes[TEXT_TRIGRAM_INDEX]
            # Presence (app/db/presence.py): UNLOGGED, as the migration makes it.
            assert (
                connection.scalar(sa.text("SELECT relpersistence FROM pg_class WHERE oid = to_regclass('presence')"))
                == "u"
            )


def test_init_db_twice_keeps_the_data_and_ends_at_the_latest_revision(database_url, engine):
    first = flask_command(database_url, "init-db")
    assert first.returncode == 0, first.stderr

    app = make_app(database_url)
    body = body_for(msg_id="kept-across-init-db", text="Tere, Ülle 👋")
    response = app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body))
    with app.app_context():
        db.engine.dispose()
    assert response.json == {"status": "stored"}

    second = flask_command(database_url, "init-db")
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout

    with engine(database_url).connect() as connection:
        stored = connection.execute(
            sa.select(Message.text, Message.raw_body).where(Message.msg_id == "kept-across-init-db")
        ).one()
        assert stored == ("Tere, Ülle 👋", body)
        version = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert version == ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def test_upgrading_a_database_in_use_keeps_its_data_and_ids_pass_two_billion(database_url, engine):
    """A database made by the first schema, with messages in it, upgraded by `init-db`."""
    first = flask_command(database_url, "db", "upgrade", "26ff4a358fb8")
    assert first.returncode == 0, first.stderr
    old = engine(database_url)
    largest_int4 = 2**31 - 1
    with old.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO message (id, msg_id, channel, sender, recipient, text, sent_at, received_at, raw_body) "
                "VALUES (:id, :msg_id, 'sms', :sender, '+37250000000', :text, :at, :at, :raw)"
            ),
            [
                {
                    "id": 7,
                    "msg_id": "old-1",
                    "sender": "+37255512345",
                    "text": "first",
                    "at": "2024-06-01 08:00:00",
                    "raw": b"{}",
                },
                {
                    "id": 8,
                    "msg_id": "old-2",
                    "sender": "a/b",
                    "text": "odd sender",
                    "at": "2024-06-01 08:01:00",
                    "raw": b"{}",
                },
                {
                    "id": largest_int4,
                    "msg_id": "old-3",
                    "sender": "+37255512345",
                    "text": "second",
                    "at": "2024-06-01 08:02:00",
                    "raw": b"{}",
                },
            ],
        )
        connection.execute(
            sa.text(
                "INSERT INTO conversation (sender, sender_key, channel, last_message_id, last_sent_at, last_text, "
                "message_count, unread_count) VALUES (:sender, :key, 'sms', :last, :at, :text, :count, :count)"
            ),
            [
                {
                    "sender": "+37255512345",
                    "key": "37255512345",
                    "last": largest_int4,
                    "at": "2024-06-01 08:02:00",
                    "text": "second",
                    "count": 2,
                },
                {
                    "sender": "a/b",
                    "key": "a/b",
                    "last": 8,
                    "at": "2024-06-01 08:01:00",
                    "text": "odd sender",
                    "count": 1,
                },
            ],
        )
        connection.execute(
            sa.text("INSERT INTO dead_letter (received_at, reason, raw_body) VALUES (:at, 'x', :raw)"),
            [{"at": "2024-06-01 08:00:00", "raw": raw} for raw in (b"retried", b"retried", b"other")],
        )
        if connection.dialect.name == "postgresql":
            # The last id an int4 sequence can hand out has been handed out.
            connection.execute(sa.text("SELECT setval('message_id_seq', :last)"), {"last": largest_int4})
    old.dispose()

    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr

    app = make_app(database_url)
    client = app.test_client()
    body = body_for(msg_id="after-the-upgrade", sender="+37255512345", text="third")
    assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).json == {"status": "stored"}
    with app.app_context():
        rows = db.session.execute(
            sa.select(Message.id, Message.text, Conversation.sender).join(Conversation).order_by(Message.id)
        ).all()
        assert rows == [
            (7, "first", "+37255512345"),
            (8, "odd sender", "a/b"),
            (largest_int4, "second", "+37255512345"),
            (largest_int4 + 1, "third", "+37255512345"),
        ]
        conversation = conversation_of("+37255512345")
        assert (conversation.message_count, conversation.unread_count) == (3, 3)
        assert conversation.last_message_id == largest_int4 + 1
        assert db.session.scalars(sa.select(DeadLetter.raw_body).order_by(DeadLetter.id)).all() == [
            b"retried",
            b"other",
        ]
        if db.engine.dialect.name == "postgresql":
            types = dict(
                db.session.execute(
                    sa.text(
                        "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND column_name IN ('id', 'last_message_id', "
                        "'conversation_id', 'change_seq')"
                    )
                ).all()
            )
            assert {
                column: types[column]
                for column in (
                    "message.id",
                    "message.conversation_id",
                    "conversation.id",
                    "conversation.last_message_id",
                    "message.change_seq",
                    "conversation.change_seq",
                )
            } == dict.fromkeys(
                (
                    "message.id",
                    "message.conversation_id",
                    "conversation.id",
                    "conversation.last_message_id",
                    "message.change_seq",
                    "conversation.change_seq",
                ),
                "bigint",
            )
            assert (
                db.session.scalar(
                    sa.text(
                        "SELECT data_type FROM pg_sequences WHERE sequencename = 'message_id_seq' "
                        "AND schemaname = current_schema()"
                    )
                )
                == "bigint"
            )
    with app.app_context():
        db.engine.dispose()


def test_upgrading_merges_conversations_that_are_one_number(database_url, engine):
    """A database made by the previous revision, with one person under two spellings of a number."""
    previous = flask_command(database_url, "db", "upgrade", "9b8d7e6f5a43")
    assert previous.returncode == 0, previous.stderr
    old = engine(database_url)
    with old.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation (id, sender, sender_key, channel, last_message_id, last_sent_at, last_text, "
                "message_count, unread_count, change_seq, last_direction, last_inbound_at, opted_out) "
                "VALUES (:id, :sender, :key, :channel, :last, :at, :text, :count, :unread, 1, :direction, :at, :out)"
            ),
            [
                {
                    "id": 1,
                    "sender": "+44 7700 900123",
                    "key": "447700900123",
                    "channel": "sms",
                    "last": 11,
                    "at": "2024-06-01 08:01:00",
                    "text": "second",
                    "count": 2,
                    "unread": 2,
                    "direction": "in",
                    "out": False,
                },
                {
                    "id": 2,
                    "sender": "+447700900123",
                    "key": "447700900123",
                    "channel": "whatsapp",
                    "last": 13,
                    "at": "2024-06-01 08:03:00",
                    "text": "our answer",
                    "count": 2,
                    "unread": 1,
                    "direction": "out",
                    "out": True,
                },
                {
                    "id": 3,
                    "sender": "MyShop",
                    "key": "myshop",
                    "channel": "sms",
                    "last": 14,
                    "at": "2024-06-01 08:04:00",
                    "text": "sale",
                    "count": 1,
                    "unread": 0,
                    "direction": "in",
                    "out": False,
                },
                {
                    "id": 4,
                    "sender": "0044 7700 900456",
                    "key": "004477009004 56",
                    "channel": "sms",
                    "last": 15,
                    "at": "2024-06-01 08:05:00",
                    "text": "hi",
                    "count": 1,
                    "unread": 1,
                    "direction": "in",
                    "out": False,
                },
            ],
        )
        connection.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, msg_id, channel, sender, recipient, text, sent_at, "
                "received_at, raw_body, change_seq, direction) "
                "VALUES (:id, :conversation, :msg_id, :channel, :sender, :recipient, :text, :at, :at, :raw, 1, :direction)"
            ),
            [
                {
                    "id": 10,
                    "conversation": 1,
                    "msg_id": "m10",
                    "channel": "sms",
                    "sender": "+44 7700 900123",
                    "recipient": "+37250000001",
                    "text": "first",
                    "at": "2024-06-01 08:00:00",
                    "raw": b"{}",
                    "direction": "in",
                },
                {
                    "id": 11,
                    "conversation": 1,
                    "msg_id": "m11",
                    "channel": "sms",
                    "sender": "+44 7700 900123",
                    "recipient": "+37250000001",
                    "text": "second",
                    "at": "2024-06-01 08:01:00",
                    "raw": b"{}",
                    "direction": "in",
                },
                {
                    "id": 12,
                    "conversation": 2,
                    "msg_id": "m12",
                    "channel": "whatsapp",
                    "sender": "+447700900123",
                    "recipient": "+37250000002",
                    "text": "STOP",
                    "at": "2024-06-01 08:02:00",
                    "raw": b"{}",
                    "direction": "in",
                },
                {
                    "id": 13,
                    "conversation": 2,
                    "msg_id": "reply-13",
                    "channel": "whatsapp",
                    "sender": "+37250000002",
                    "recipient": "+447700900123",
                    "text": "our answer",
                    "at": "2024-06-01 08:03:00",
                    "raw": b"{}",
                    "direction": "out",
                },
                {
                    "id": 14,
                    "conversation": 3,
                    "msg_id": "m14",
                    "channel": "sms",
                    "sender": "MyShop",
                    "recipient": "+37250000001",
                    "text": "sale",
                    "at": "2024-06-01 08:04:00",
                    "raw": b"{}",
                    "direction": "in",
                },
                {
                    "id": 15,
                    "conversation": 4,
                    "msg_id": "m15",
                    "channel": "sms",
                    "sender": "0044 7700 900456",
                    "recipient": None,
                    "text": "hi",
                    "at": "2024-06-01 08:05:00",
                    "raw": b"{}",
                    "direction": "in",
                },
            ],
        )
        connection.execute(
            sa.text(
                "INSERT INTO opt_out (conversation_id, opted_out, at, message_id) "
                "VALUES (2, :yes, '2024-06-01 08:02:00', 12)"
            ),
            {"yes": True},
        )
        connection.execute(sa.text("UPDATE change_counter SET value = 1"))
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT setval('message_id_seq', 15)"))
            connection.execute(sa.text("SELECT setval('conversation_id_seq', 4)"))
    old.dispose()

    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr

    app = make_app(database_url)
    client = app.test_client()
    body = body_for(msg_id="after-the-merge", sender="+44 (7700) 900123", recipient="+37250000001", text="third")
    assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).json == {"status": "stored"}
    with app.app_context():
        conversations = db.session.execute(
            sa.select(
                Conversation.id,
                Conversation.sender,
                Conversation.sender_key,
                Conversation.message_count,
                Conversation.unread_count,
                Conversation.opted_out,
                Conversation.status,
            ).order_by(Conversation.id)
        ).all()
        assert conversations == [
            (2, "+447700900123", "447700900123", 4 + 1, 3 + 1, True, "open"),
            (3, "MyShop", "myshop", 1, 0, False, "open"),
            (4, "+447700900456", "447700900456", 1, 1, False, "open"),
        ]
        # Every message kept, in the merged conversation, with the sender as it came.
        messages = db.session.execute(
            sa.select(Message.msg_id, Message.conversation_id, Message.sender).order_by(Message.id)
        ).all()
        assert messages == [
            ("m10", 2, "+44 7700 900123"),
            ("m11", 2, "+44 7700 900123"),
            ("m12", 2, "+447700900123"),
            ("reply-13", 2, "+37250000002"),
            ("m14", 3, "MyShop"),
            ("m15", 4, "0044 7700 900456"),
            ("after-the-merge", 2, "+44 (7700) 900123"),
        ]
        assert db.session.scalars(sa.select(OptOut.conversation_id)).all() == [2]
        merged = db.session.get(Conversation, 2)
        assert merged.last_text == "third"
        # Our numbers each customer wrote to, for the number filter: filled from the old messages.
        assert sorted(
            db.session.execute(sa.select(ConversationRecipient.conversation_id, ConversationRecipient.recipient)).all()
        ) == [(2, "+37250000001"), (2, "+37250000002"), (3, "+37250000001")]
    with app.app_context():
        db.engine.dispose()


def test_the_merge_keeps_the_newest_message_and_a_new_change_number(database_url, engine):
    """Merged without new messages: the newest of both is the preview, and polls see the change."""
    previous = flask_command(database_url, "db", "upgrade", "9b8d7e6f5a43")
    assert previous.returncode == 0, previous.stderr
    old = engine(database_url)
    with old.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation (id, sender, sender_key, channel, last_message_id, last_sent_at, last_text, "
                "message_count, unread_count, change_seq, last_direction, last_inbound_at, opted_out) "
                "VALUES (:id, :sender, :sender, 'sms', :last, :at, :text, 1, 0, 5, 'in', :at, :out)"
            ),
            [
                {
                    "id": 1,
                    "sender": "447700900123",
                    "last": 21,
                    "at": "2024-06-02 09:00:00",
                    "text": "newer",
                    "out": False,
                },
                {
                    "id": 2,
                    "sender": "+44-7700-900123",
                    "last": 20,
                    "at": "2024-06-01 09:00:00",
                    "text": "older",
                    "out": False,
                },
            ],
        )
        connection.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, msg_id, channel, sender, recipient, text, sent_at, "
                "received_at, raw_body, change_seq, direction) "
                "VALUES (:id, :conversation, :id, 'sms', 'x', NULL, :text, :at, :at, :raw, 5, 'in')"
            ),
            [
                {"id": 20, "conversation": 2, "text": "older", "at": "2024-06-01 09:00:00", "raw": b"{}"},
                {"id": 21, "conversation": 1, "text": "newer", "at": "2024-06-02 09:00:00", "raw": b"{}"},
            ],
        )
        connection.execute(sa.text("UPDATE change_counter SET value = 5"))
    old.dispose()

    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr
    with engine(database_url).connect() as connection:
        rows = connection.execute(
            sa.text("SELECT id, sender, last_message_id, last_text, message_count, change_seq FROM conversation")
        ).all()
        assert rows == [(1, "+447700900123", 21, "newer", 2, 6)]
        assert connection.scalar(sa.text("SELECT value FROM change_counter")) == 6


def test_users_from_before_roles_become_admins_and_log_in_again(database_url, engine):
    """A database made by the revision before roles, with two users who could do everything."""
    previous = flask_command(database_url, "db", "upgrade", "c9f2d4a6e81b")
    assert previous.returncode == 0, previous.stderr
    with engine(database_url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO \"user\" (id, username, password_hash, session_token) VALUES (:id, :name, 'x', :token)"
            ),
            [{"id": 1, "name": "alice", "token": "a" * 64}, {"id": 2, "name": "bob", "token": "b" * 64}],
        )
    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr
    with engine(database_url).connect() as connection:
        users = connection.execute(sa.text('SELECT username, role, disabled FROM "user" ORDER BY id')).all()
        assert [(name, role, bool(disabled)) for name, role, disabled in users] == [
            ("alice", "admin", False),
            ("bob", "admin", False),
        ]
        assert connection.scalar(sa.text("SELECT count(*) FROM login_session")) == 0  # everyone logs in again


def test_ids_are_never_handed_out_again_after_the_upgrade(database_url, engine):
    """A database made by the revision before AUTOINCREMENT, with data, upgraded by `init-db`:
    the data and text search stay, and a new conversation's id is above every id the audit trail
    mentions (conversation 7 was deleted before the upgrade; an event still names it)."""
    previous = flask_command(database_url, "db", "upgrade", "f3a8d2c5b9e7")
    assert previous.returncode == 0, previous.stderr
    old = engine(database_url)
    with old.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation (id, sender, sender_key, channel, last_message_id, last_sent_at, last_text, "
                "message_count, unread_count, change_seq, contact_name, contact_key) "
                "VALUES (:id, :sender, :key, 'sms', :id, '2026-11-01 08:00:00', :text, 1, 1, 1, :name, :name_key)"
            ),
            [
                {
                    "id": 1,
                    "sender": "+37255511111",
                    "key": "37255511111",
                    "text": "Tere zebra",
                    "name": None,
                    "name_key": None,
                },
                {
                    "id": 2,
                    "sender": "+37255522222",
                    "key": "37255522222",
                    "text": "Kas pood on avatud?",
                    "name": "Ülle Tamm",
                    "name_key": "ulle tamm",
                },
            ],
        )
        connection.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, msg_id, channel, sender, text, folded_text, sent_at, "
                "received_at, raw_body, change_seq) VALUES (:id, :id, :msg_id, 'sms', :sender, :text, :folded, "
                "'2026-11-01 08:00:00', '2026-11-01 08:00:00', :raw, 1)"
            ),
            [
                {
                    "id": 1,
                    "msg_id": "m1",
                    "sender": "+37255511111",
                    "text": "Tere zebra",
                    "folded": "tere zebra",
                    "raw": b"{}",
                },
                {
                    "id": 2,
                    "msg_id": "m2",
                    "sender": "+37255522222",
                    "text": "Kas pood on avatud?",
                    "folded": "kas pood on avatud?",
                    "raw": b"{}",
                },
            ],
        )
        connection.execute(
            sa.text("INSERT INTO \"user\" (id, username, password_hash, role) VALUES (1, 'alice', 'x', 'admin')")
        )
        connection.execute(
            sa.text(
                "INSERT INTO audit_event (at, username, action, details) "
                "VALUES ('2026-11-01 09:00:00', 'alice', 'reply', :details)"
            ),
            {"details": '{"conversation": 7, "reply": 40}'},
        )
        connection.execute(sa.text("UPDATE change_counter SET value = 1"))
        if connection.dialect.name == "postgresql":  # where ids 7 and 40 were handed out
            connection.execute(sa.text("SELECT setval('conversation_id_seq', 7)"))
            connection.execute(sa.text("SELECT setval('message_id_seq', 40)"))
    old.dispose()

    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr

    app = make_app(database_url)
    client = app.test_client()

    def deliver(sender: str, text: str) -> None:
        db.session.rollback()  # this test's reads see what the request stored
        body = body_for(sender=sender, text=text)
        assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).json == {"status": "stored"}

    with app.app_context():
        from app.inbox import queries, search
        from app.privacy import erasure

        assert db.session.execute(sa.select(Message.id, Message.text).order_by(Message.id)).all() == [
            (1, "Tere zebra"),
            (2, "Kas pood on avatud?"),
        ]
        assert [hit.id for hit in search.search_messages("zebra")[0]] == [1]
        assert [
            row.id for row in db.session.scalars(sa.select(Conversation).where(queries.conversation_matches("ulle")))
        ] == [2]
        deliver("+37255533333", "Uus klient zebra")
        newest = conversation_of("+37255533333")
        assert newest.id > 7 and newest.last_message_id > 40
        assert [hit.id for hit in search.search_messages("zebra")[0]] == [newest.last_message_id, 1]
        erasure.erase_conversation(newest.id)
        deliver("+37255544444", "Veel üks")
        assert conversation_of("+37255544444").id > newest.id
    close_app(app)


def test_replies_legs_move_out_of_the_raw_body_and_back(database_url, engine):
    """A database made by the revision before `message.legs`, with a reply whose legs are in its
    raw body beside an inbound message: upgraded, the legs are in `legs` and the reply's raw body
    is empty, the inbound message's untouched; downgraded, the legs are back in the raw body."""
    previous = flask_command(database_url, "db", "upgrade", "e7a1c3b5d9f2")
    assert previous.returncode == 0, previous.stderr
    legs = [{"channel": "whatsapp", "sender": None}, {"channel": "sms", "sender": "+37250000000"}]
    inbound_body = json.dumps({"sender": "+37255511111", "text": "Tere"}).encode()
    old = engine(database_url)
    with old.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation (id, sender, sender_key, channel, last_message_id, last_sent_at, last_text, "
                "message_count, unread_count, change_seq) "
                "VALUES (1, '+37255511111', '37255511111', 'sms', 2, '2026-11-01 08:01:00', 'Vastus', 2, 0, 1)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO message (id, conversation_id, msg_id, channel, sender, recipient, text, sent_at, "
                "received_at, raw_body, change_seq, direction, status) "
                "VALUES (:id, 1, :msg_id, :channel, :sender, :recipient, :text, :at, :at, :raw, 1, :direction, :status)"
            ),
            [
                {
                    "id": 1,
                    "msg_id": "m1",
                    "channel": "sms",
                    "sender": "+37255511111",
                    "recipient": "+37250000000",
                    "text": "Tere",
                    "at": "2026-11-01 08:00:00",
                    "raw": inbound_body,
                    "direction": "in",
                    "status": None,
                },
                {
                    "id": 2,
                    "msg_id": "reply-2",
                    "channel": "whatsapp",
                    "sender": "",
                    "recipient": "+37255511111",
                    "text": "Vastus",
                    "at": "2026-11-01 08:01:00",
                    "raw": json.dumps({"legs": legs}).encode(),
                    "direction": "out",
                    "status": "sent",
                },
            ],
        )
    old.dispose()

    upgraded = flask_command(database_url, "init-db")
    assert upgraded.returncode == 0, upgraded.stderr
    with engine(database_url).connect() as connection:
        rows = connection.execute(sa.select(Message.msg_id, Message.legs, Message.raw_body).order_by(Message.id)).all()
        assert rows == [("m1", None, inbound_body), ("reply-2", legs, b"")]
        assert connection.scalar(sa.select(sa.func.count()).where(Message.legs.is_(None))) == 1  # SQL NULL

    downgraded = flask_command(database_url, "db", "downgrade", "e7a1c3b5d9f2")
    assert downgraded.returncode == 0, downgraded.stderr
    with engine(database_url).connect() as connection:
        bodies = connection.execute(sa.text("SELECT raw_body FROM message ORDER BY id")).scalars().all()
        assert bodies[0] == inbound_body and json.loads(bodies[1]) == {"legs": legs}
        assert "legs" not in {column["name"] for column in sa.inspect(connection).get_columns("message")}

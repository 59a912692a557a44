"""Migrations: an empty database of either kind upgraded with them has exactly the models' schema.

The upgrades run as users run them, `flask --app app init-db` in its own process.
"""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.extensions import db
from app.models import Message

from conftest import flask_command, fresh_database, ROOT, body_for, make_app, signed_headers

TRIGRAM_INDEX = "ix_conversation_sender_key_trgm"  # declared for PostgreSQL only


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
        return {"objects": connection.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE tbl_name != 'alembic_version' ORDER BY name").all()}
    schema = connection.scalar(sa.text("SELECT current_schema()"))

    def rows(sql: str) -> list[tuple]:
        return [tuple(str(value).replace(f"{schema}.", "") for value in row)
                for row in connection.execute(sa.text(sql))]

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


def test_upgrading_an_empty_database_gives_exactly_the_models_schema(database_url, reference_url,
                                                                   engine):
    result = flask_command(database_url, "init-db")
    assert result.returncode == 0, result.stderr

    migrated, reference = engine(database_url), engine(reference_url)
    db.metadata.create_all(reference)
    dialect = migrated.dialect.name

    def include(_object, name, type_, _reflected, _compare_to) -> bool:
        return not (type_ == "index" and name == TRIGRAM_INDEX and dialect != "postgresql")

    with migrated.connect() as connection, reference.connect() as expected:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include})
        assert compare_metadata(context, db.metadata) == []
        # Alembic compares columns and index columns; the catalogs also show index methods,
        # operator classes, partial-index conditions and sequences.
        assert schema_of(connection) == schema_of(expected)
        if dialect == "postgresql":
            indexes = dict(connection.execute(sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")).all())
            assert "USING gin (sender_key gin_trgm_ops)" in indexes[TRIGRAM_INDEX]


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
        stored = connection.execute(sa.select(Message.text, Message.raw_body)
                                    .where(Message.msg_id == "kept-across-init-db")).one()
        assert stored == ("Tere, Ülle 👋", body)
        version = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    assert version == ScriptDirectory(str(ROOT / "migrations")).get_current_head()

"""contacts, open/done views, numbers in E.164

Revision ID: a7c41e2b9d30
Revises: 9b8d7e6f5a43
Create Date: 2026-11-25 18:00:00

Conversations get a contact name and note and an open/done status; `conversation_recipient`
remembers which of our numbers each customer wrote to; saved replies get their table.

Senders that are possible phone numbers become E.164 (`+44 7700 900123` -> `+447700900123`),
as ingest now stores them, and conversations that turn out to be one number are merged into
one: every message and opt-out moves to it, message and unread counts add up, the newest
message stays the newest, opted out if any was. Messages keep the sender as it came.
Conversations are read in batches, so a large table is never held in memory.
"""

import re

import sqlalchemy as sa
from alembic import op

from app.db.numbers import normalise

revision = "a7c41e2b9d30"
down_revision = "9b8d7e6f5a43"
branch_labels = None
depends_on = None

BATCH = 5000
SEARCH_NOISE = re.compile(r"[+\s\-()]")  # as app.ingest.search_key, at the time of writing

conversation = sa.table(
    "conversation",
    sa.column("id", sa.BigInteger),
    sa.column("sender", sa.String),
    sa.column("sender_key", sa.String),
    sa.column("channel", sa.String),
    sa.column("last_message_id", sa.BigInteger),
    sa.column("last_sent_at", sa.DateTime),
    sa.column("last_text", sa.String),
    sa.column("message_count", sa.Integer),
    sa.column("unread_count", sa.Integer),
    sa.column("change_seq", sa.BigInteger),
    sa.column("last_direction", sa.String),
    sa.column("last_inbound_at", sa.DateTime),
    sa.column("opted_out", sa.Boolean),
    sa.column("blacklist", sa.String),
    sa.column("blacklist_problem", sa.String),
    sa.column("contact_name", sa.String),
    sa.column("contact_note", sa.Text),
    sa.column("status", sa.String),
)
message = sa.table("message", sa.column("conversation_id", sa.BigInteger))
opt_out = sa.table("opt_out", sa.column("conversation_id", sa.BigInteger))
change_counter = sa.table("change_counter", sa.column("id", sa.Integer), sa.column("value", sa.BigInteger))


def search_key(text: str) -> str:
    return SEARCH_NOISE.sub("", text).lower()[:64]


def upgrade():
    op.add_column("conversation", sa.Column("contact_name", sa.String(length=120), nullable=True))
    op.add_column("conversation", sa.Column("contact_note", sa.Text(), nullable=True))
    op.add_column("conversation", sa.Column("status", sa.String(length=4), server_default="open", nullable=False))
    op.add_column("conversation", sa.Column("contact_key", sa.String(length=360), nullable=True))
    op.create_index(
        "ix_conversation_status_last_message_id", "conversation", ["status", "last_message_id", "sender_key"]
    )
    op.create_index("ix_conversation_channel_last_message_id", "conversation", ["channel", "last_message_id"])
    op.create_index(
        "ix_conversation_unread_last_message_id",
        "conversation",
        ["last_message_id"],
        sqlite_where=sa.text("unread_count > 0"),
        postgresql_where=sa.text("unread_count > 0"),
    )
    op.create_index(
        "ix_conversation_opted_out_last_message_id",
        "conversation",
        ["last_message_id"],
        sqlite_where=sa.text("opted_out = 1"),
        postgresql_where=sa.text("opted_out"),
    )
    op.create_index(
        "ix_conversation_contact_key",
        "conversation",
        ["contact_key"],
        sqlite_where=sa.text("contact_key IS NOT NULL"),
        postgresql_where=sa.text("contact_key IS NOT NULL"),
    )
    op.create_table(
        "conversation_recipient",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_conversation_recipient_conversation_id_conversation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_recipient")),
        sa.UniqueConstraint("recipient", "conversation_id", name=op.f("uq_conversation_recipient_recipient")),
    )
    op.create_index(op.f("ix_conversation_recipient_conversation_id"), "conversation_recipient", ["conversation_id"])
    op.create_table(
        "saved_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_reply")),
        sa.UniqueConstraint("title", name=op.f("uq_saved_reply_title")),
    )

    connection = op.get_bind()
    merge_conversations_by_number(connection)
    connection.execute(
        sa.text(
            "INSERT INTO conversation_recipient (recipient, conversation_id) "
            "SELECT DISTINCT recipient, conversation_id FROM message "
            "WHERE direction = 'in' AND recipient IS NOT NULL AND recipient != ''"
        )
    )


def merge_conversations_by_number(connection: sa.Connection) -> None:
    """Give every conversation its E.164 sender, merging those that are the same number."""
    renamed: dict[int, str] = {}  # conversation id -> its number in E.164, where that differs
    last_id = 0
    while True:  # in batches of BATCH, by id
        rows = connection.execute(
            sa.select(conversation.c.id, conversation.c.sender)
            .where(conversation.c.id > last_id)
            .order_by(conversation.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        renamed.update((row.id, key) for row in rows if (key := normalise(row.sender)) != row.sender)
    if not renamed:
        return

    groups: dict[str, list[int]] = {}
    for conversation_id, key in renamed.items():
        groups.setdefault(key, []).append(conversation_id)
    keys = list(groups)
    for start in range(0, len(keys), BATCH):  # a conversation already stored under the E.164 number
        for row in connection.execute(
            sa.select(conversation.c.id, conversation.c.sender).where(
                conversation.c.sender.in_(keys[start : start + BATCH])
            )
        ):
            if row.id not in groups[row.sender]:
                groups[row.sender].insert(0, row.id)

    change = connection.execute(
        sa.update(change_counter).values(value=change_counter.c.value + 1).returning(change_counter.c.value)
    ).scalar_one()
    items = list(groups.items())
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        merges = [(key, ids) for key, ids in batch if len(ids) > 1]
        if merges:
            merge(connection, merges, change)
        renames = [
            {"conversation_id": ids[0], "new_sender": key, "new_sender_key": search_key(key)}
            for key, ids in batch
            if len(ids) == 1
        ]
        if renames:
            connection.execute(
                sa.update(conversation)
                .where(conversation.c.id == sa.bindparam("conversation_id"))
                .values(
                    sender=sa.bindparam("new_sender"), sender_key=sa.bindparam("new_sender_key"), change_seq=change
                ),
                renames,
            )


def merge(connection: sa.Connection, merges: list[tuple[str, list[int]]], change: int) -> None:
    """Fold each group's conversations into its first (the one already under the E.164 number,
    else the oldest): messages and opt-outs move, totals add up, the newest activity wins."""
    all_ids = [conversation_id for _, ids in merges for conversation_id in ids]
    rows = {row.id: row for row in connection.execute(sa.select(conversation).where(conversation.c.id.in_(all_ids)))}
    moves, deletes, updates = [], [], []
    for key, ids in merges:
        members = [rows[conversation_id] for conversation_id in ids]
        kept, others = members[0], members[1:]
        newest = max(members, key=lambda row: row.last_message_id or 0)
        inbound = [row.last_inbound_at for row in members if row.last_inbound_at is not None]
        moves += [{"from_id": row.id, "to_id": kept.id} for row in others]
        deletes += [{"conversation_id": row.id} for row in others]
        updates.append(
            {
                "conversation_id": kept.id,
                "new_sender": key,
                "new_sender_key": search_key(key),
                "new_channel": newest.channel,
                "new_last_message_id": newest.last_message_id,
                "new_last_sent_at": newest.last_sent_at,
                "new_last_text": newest.last_text,
                "new_last_direction": newest.last_direction,
                "new_message_count": sum(row.message_count for row in members),
                "new_unread_count": sum(row.unread_count for row in members),
                "new_last_inbound_at": max(inbound) if inbound else None,
                "new_opted_out": any(row.opted_out for row in members),
                "new_blacklist": next((row.blacklist for row in members if row.blacklist), None),
                "new_blacklist_problem": next(
                    (row.blacklist_problem for row in members if row.blacklist_problem), None
                ),
                "new_contact_name": next((row.contact_name for row in members if row.contact_name), None),
                "new_contact_note": next((row.contact_note for row in members if row.contact_note), None),
                "new_status": "open" if any(row.status == "open" for row in members) else "done",
            }
        )
    for table in (message, opt_out):
        connection.execute(
            sa.update(table)
            .where(table.c.conversation_id == sa.bindparam("from_id"))
            .values(conversation_id=sa.bindparam("to_id")),
            moves,
        )
    # The merged-away rows go first: the kept one takes their sender and newest message id,
    # both unique.
    connection.execute(sa.delete(conversation).where(conversation.c.id == sa.bindparam("conversation_id")), deletes)
    connection.execute(
        sa.update(conversation)
        .where(conversation.c.id == sa.bindparam("conversation_id"))
        .values(
            sender=sa.bindparam("new_sender"),
            sender_key=sa.bindparam("new_sender_key"),
            channel=sa.bindparam("new_channel"),
            last_message_id=sa.bindparam("new_last_message_id"),
            last_sent_at=sa.bindparam("new_last_sent_at"),
            last_text=sa.bindparam("new_last_text"),
            last_direction=sa.bindparam("new_last_direction"),
            message_count=sa.bindparam("new_message_count"),
            unread_count=sa.bindparam("new_unread_count"),
            last_inbound_at=sa.bindparam("new_last_inbound_at"),
            opted_out=sa.bindparam("new_opted_out"),
            blacklist=sa.bindparam("new_blacklist"),
            blacklist_problem=sa.bindparam("new_blacklist_problem"),
            contact_name=sa.bindparam("new_contact_name"),
            contact_note=sa.bindparam("new_contact_note"),
            status=sa.bindparam("new_status"),
            change_seq=change,
        ),
        updates,
    )


def downgrade():
    raise NotImplementedError("restore the backup taken before upgrading; see docs/deploy.md")

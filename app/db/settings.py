"""The `setting` table: one text value per name, for what an admin chooses in the app.

Each feature names its own settings and parses their values; these two functions are the only
reads and writes of the table by name. `save` adds to the caller's write transaction.
"""

import sqlalchemy as sa

from app.db.models import Setting
from app.extensions import db


def stored(name: str) -> str | None:
    """The saved value, or None where nobody has chosen one."""
    return db.session.scalar(sa.select(Setting.value).where(Setting.name == name))


def save(name: str, value: str) -> None:
    """Insert or replace the value, in the caller's write transaction."""
    row = db.session.get(Setting, name)
    if row is None:
        db.session.add(Setting(name=name, value=value))
    else:
        row.value = value

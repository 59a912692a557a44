# The presence table's DDL hooks: PostgreSQL's UNLOGGED table is made with the models' tables.
from app.db import presence as _presence  # noqa: F401

"""The ranking's tie order: users.name_key.

No index on videos.votes: the ranking's query reads every public video anyway (PostgreSQL
chose sequential scans over one on (owner_id, status, votes) with 40 000 videos), and an
indexed votes column would rule out HOT updates: every vote would write every index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anb.core.text import search_key

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BACKFILL_ROWS = 500  # users per UPDATE: one statement each, not one per user


def upgrade() -> None:
    op.add_column("users", sa.Column("name_key", sa.Text(), nullable=True))
    _backfill_name_keys()
    with op.batch_alter_table("users") as users:
        users.alter_column("name_key", existing_type=sa.Text(), nullable=False)


def _backfill_name_keys() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, first_name, last_name FROM users")).all()
    for start in range(0, len(rows), BACKFILL_ROWS):
        chunk = rows[start : start + BACKFILL_ROWS]
        values = ", ".join(f"(:id{n}, :key{n})" for n in range(len(chunk)))
        params: dict[str, str] = {}
        for n, (user_id, first_name, last_name) in enumerate(chunk):
            # as anb.users.models.name_key folds it
            params[f"id{n}"], params[f"key{n}"] = user_id, search_key(f"{first_name} {last_name}")
        connection.execute(
            sa.text(
                f"UPDATE users SET name_key = keys.column2 FROM (VALUES {values}) AS keys "
                "WHERE users.id = keys.column1"
            ),
            params,
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.drop_column("name_key")

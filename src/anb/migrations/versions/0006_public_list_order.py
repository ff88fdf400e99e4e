"""The public list by publication order: each video keeps its owner's scope keys
(videos.city_key, videos.country_key) and three indexes on (status, [scope key,]
processed_at, id) replace ix_videos_status_processed.

With the keys on users only, a city's first page walked the global order and looked up each
video's owner until 20 matched (~1 000 owners for one city in 50), and its count joined the
city's players to their videos: on 200 000 public videos, ~5 and ~16 ms with the best users
indexes, against ~0.4 and ~0.7 ms as one index range of the videos' own keys.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCOPE_KEYS = ("city_key", "country_key")
BACKFILL_ROWS = 5000  # videos per UPDATE (~0.1 s each on PostgreSQL)
PUBLIC_INDEXES = {
    "ix_videos_public": ["status", "processed_at", "id"],
    "ix_videos_public_city": ["status", "city_key", "processed_at", "id"],
    "ix_videos_public_country": ["status", "country_key", "processed_at", "id"],
}


def upgrade() -> None:
    for key in SCOPE_KEYS:
        op.add_column("videos", sa.Column(key, sa.String(100), nullable=True))
    _backfill_scope_keys()
    with op.batch_alter_table("videos") as videos:
        for key in SCOPE_KEYS:
            videos.alter_column(key, existing_type=sa.String(100), nullable=False)
        videos.drop_index("ix_videos_status_processed")
        for name, columns in PUBLIC_INDEXES.items():
            videos.create_index(name, columns)


def _backfill_scope_keys() -> None:
    """Copy each video's owner's keys, BACKFILL_ROWS videos (a range of ids) per UPDATE: a
    statement over every video of a league (~200 000) outlasts the connection's 10 s
    timeout. One statement text for both databases: a correlated subquery per key."""
    connection = op.get_bind()
    ids = connection.execute(sa.text("SELECT id FROM videos ORDER BY id")).scalars().all()
    copy = ", ".join(
        f"{key} = (SELECT users.{key} FROM users WHERE users.id = videos.owner_id)"
        for key in SCOPE_KEYS
    )
    update = sa.text(f"UPDATE videos SET {copy} WHERE id >= :first AND id <= :last")
    for start in range(0, len(ids), BACKFILL_ROWS):
        chunk = ids[start : start + BACKFILL_ROWS]
        connection.execute(update, {"first": chunk[0], "last": chunk[-1]})


def downgrade() -> None:
    with op.batch_alter_table("videos") as videos:
        for name in PUBLIC_INDEXES:
            videos.drop_index(name)
        videos.create_index("ix_videos_status_processed", ["status", "processed_at"])
        for key in SCOPE_KEYS:
            videos.drop_column(key)

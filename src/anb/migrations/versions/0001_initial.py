"""Users, videos and votes.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("uploaded", "processing", "processed", "failed")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("country", sa.String(100), nullable=False),
        sa.Column("city_key", sa.String(100), nullable=False),
        sa.Column("country_key", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_users_city_key", "users", ["city_key"])
    op.create_index("ix_users_country_key", "users", ["country_key"])
    op.create_table(
        "videos",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "owner_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="videostatus", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("original_key", sa.String(255), nullable=False),
        sa.Column("processed_key", sa.String(255), nullable=True),
        sa.Column("original_bytes", sa.Integer(), nullable=False),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_videos_owner_uploaded", "videos", ["owner_id", "uploaded_at"])
    op.create_index("ix_videos_status_processed", "videos", ["status", "processed_at"])
    op.create_table(
        "votes",
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "video_id",
            sa.String(36),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_votes_video_id", "votes", ["video_id"])


def downgrade() -> None:
    op.drop_table("votes")
    op.drop_table("videos")
    op.drop_table("users")

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Connection, Enum, ForeignKey, Index, Integer, String, Text, event, select
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from anb.core.db import Base, UTCDateTime, utcnow
from anb.users.models import User, new_id


class VideoStatus(enum.StrEnum):
    uploaded = "uploaded"
    processing = "processing"
    processed = "processed"
    failed = "failed"


TITLE_MAX_CHARS = 200  # a video's title, in every rule and message about it


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        Index("ix_videos_owner_uploaded", "owner_id", "uploaded_at"),
        # The public list, newest first, by scope: each page is a range of one of these
        # (read backwards), never a sort of the scope. `status` leads, so an equality on it
        # from a bound parameter still selects the index (a partial index would need the
        # literal value in the statement).
        Index("ix_videos_public", "status", "processed_at", "id"),
        Index("ix_videos_public_city", "status", "city_key", "processed_at", "id"),
        Index("ix_videos_public_country", "status", "country_key", "processed_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX_CHARS))
    status: Mapped[VideoStatus] = mapped_column(
        Enum(VideoStatus, native_enum=False, length=20, validate_strings=True),
        default=VideoStatus.uploaded,
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    task_id: Mapped[str] = mapped_column(String(36), default=new_id)
    original_key: Mapped[str] = mapped_column(String(255))
    processed_key: Mapped[str | None] = mapped_column(String(255), default=None)
    thumbnail_key: Mapped[str | None] = mapped_column(String(255), default=None)
    """The poster published with the processed clip (none for clips published before)."""
    claim_token: Mapped[str | None] = mapped_column(String(36), default=None)
    """The worker attempt that may publish this video (the last one to claim it)."""
    original_bytes: Mapped[int] = mapped_column(Integer, default=0)
    votes: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    city_key: Mapped[str] = mapped_column(String(100))
    """The owner's folded city, copied when the row is inserted (`_copy_owner_scope`) so that
    the public list of a city is one index range. A player's city never changes (no endpoint
    changes it); if it ever does, their videos' keys must change with it."""
    country_key: Mapped[str] = mapped_column(String(100))
    """The owner's folded country, as `city_key`."""

    owner: Mapped[User] = relationship(lazy="raise")


@event.listens_for(Video, "before_insert")
def _copy_owner_scope(_mapper: Mapper[Video], _connection: Connection, video: Video) -> None:
    """Fill the scope keys from the owner's row in the INSERT itself (scalar subqueries):
    no extra round trip, and no code path that creates a video can forget them."""
    owner = User.id == video.owner_id
    if video.city_key is None:
        video.city_key = select(User.city_key).where(owner).scalar_subquery()
    if video.country_key is None:
        video.country_key = select(User.country_key).where(owner).scalar_subquery()


class UploadSession(Base):
    """A direct upload granted but not yet completed: the video exists once it completes."""

    __tablename__ = "upload_sessions"

    video_id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_CHARS))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def incoming_key_for(video_id: str) -> str:
    """Where a direct upload lands before it is completed."""
    return f"incoming/{video_id}.mp4"


def original_key_for(video_id: str) -> str:
    return f"videos/{video_id}/original.mp4"


def processed_key_for(video_id: str, claim_token: str) -> str:
    """Each attempt writes its own object, so a losing attempt never overwrites the winner's."""
    return f"{processed_prefix_for(video_id)}{claim_token}.mp4"


def poster_key_for(video_id: str, claim_token: str) -> str:
    """The poster beside the attempt's clip (under the same prefix, swept with it)."""
    return f"{processed_prefix_for(video_id)}{claim_token}.jpg"


def processed_prefix_for(video_id: str) -> str:
    return f"videos/{video_id}/processed-"

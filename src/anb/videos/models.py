from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
        Index("ix_videos_status_processed", "status", "processed_at"),
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
    claim_token: Mapped[str | None] = mapped_column(String(36), default=None)
    """The worker attempt that may publish this video (the last one to claim it)."""
    original_bytes: Mapped[int] = mapped_column(Integer, default=0)
    votes: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    owner: Mapped[User] = relationship(lazy="raise")


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


def processed_prefix_for(video_id: str) -> str:
    return f"videos/{video_id}/processed-"

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column

from anb.core.db import Base, UTCDateTime, utcnow
from anb.core.text import search_key


def new_id() -> str:
    return str(uuid.uuid4())


def display_name(first_name: str, last_name: str) -> str:
    """How a player is named in the public views (the contract's `username`): "First Last"."""
    return f"{first_name} {last_name}"


def name_key(first_name: str, last_name: str) -> str:
    """The order of players tied in a ranking: "First Last" folded like the filters (so
    "Álvaro" comes before "Zoe"), compared bytewise by the database and by Redis alike."""
    return search_key(display_name(first_name, last_name))


def _name_key_of_row(context: DefaultExecutionContext) -> str:
    row = context.get_current_parameters()  # type: ignore[no-untyped-call]  # SQLAlchemy's own
    return name_key(row["first_name"], row["last_name"])


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(100))
    city_key: Mapped[str] = mapped_column(String(100), index=True)
    country_key: Mapped[str] = mapped_column(String(100), index=True)
    name_key: Mapped[str] = mapped_column(Text, default=_name_key_of_row)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def full_name(self) -> str:
        return display_name(self.first_name, self.last_name)

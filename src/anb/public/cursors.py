"""Cursors of the public list: where the next page starts, for clients that page deep.

A cursor names the last video of a page by its place in the list's order (publication time
to the microsecond, then id), so the next page is the videos after it: one index range read
at any depth, and videos published meanwhile (they go to the top) shift nothing. It is bound
to its scope and signed (HMAC under a key derived from the signing secret): a cursor that
was altered, or made for another city or country, is refused (`InvalidCursor`, 400).
Opaque to clients: base64url of the position, a dot, the signature's first 128 bits.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from anb.core.errors import InvalidInput
from anb.core.security import sign
from anb.public.scopes import Scope

CURSOR_MAX_CHARS = 200  # what one produces is ~110 characters
SIGNATURE_CHARS = 32  # hex digits of the HMAC kept: 128 bits
_PURPOSE = "public-list-cursors"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VIDEO_ID_MAX_CHARS = 36


class InvalidCursor(InvalidInput):
    def __init__(self, parameter: str = "cursor") -> None:
        super().__init__(f"Parámetro inválido en la consulta: {parameter}")


@dataclass(frozen=True)
class Position:
    """A video's place in the list: the page after it starts after it."""

    processed_at: datetime
    video_id: str

    @property
    def text(self) -> str:
        """`microseconds.video_id`: what a cursor signs, and how anchors are cached."""
        return f"{_microseconds(self.processed_at)}.{self.video_id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position `text` (a `Position.text`) names (ValueError if it is not one)."""
        micros, _, video_id = text.partition(".")
        try:
            processed_at = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            raise ValueError(text) from None
        if not video_id or len(video_id) > _VIDEO_ID_MAX_CHARS:
            raise ValueError(text)
        return cls(processed_at, video_id)

    def encode(self, scope: Scope) -> str:
        payload = self.text
        body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        return f"{body}.{_signature(scope, payload)}"

    @classmethod
    def decode(cls, cursor: str, scope: Scope) -> Position:
        """The position `cursor` names in `scope`'s list (`InvalidCursor` if it is not one
        made for that scope)."""
        body, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (binascii.Error, ValueError):
            raise InvalidCursor() from None
        if not hmac.compare_digest(_signature(scope, payload).encode(), signature.encode()):
            raise InvalidCursor()
        try:  # signed by us, so well formed: checked all the same
            return cls.parse(payload)
        except ValueError:
            raise InvalidCursor() from None


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _signature(scope: Scope, payload: str) -> str:
    return sign(f"{scope.digest}\n{payload}", purpose=_PURPOSE)[:SIGNATURE_CHARS]

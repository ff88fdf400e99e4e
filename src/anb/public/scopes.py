"""The filter scopes of the public views (all players, a city, a country, both)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVarTuple

from sqlalchemy import Select

from anb.cache import Cache
from anb.core.text import search_key
from anb.users.models import User
from anb.videos.models import Video

Row = TypeVarTuple("Row")  # the column types of a query


@dataclass(frozen=True)
class Scope:
    """A filter of the public views: folded city and country, empty meaning any."""

    city: str = ""
    country: str = ""

    @classmethod
    def of(cls, city: str | None, country: str | None) -> Scope:
        return cls(search_key(city or ""), search_key(country or ""))

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.city}\x00{self.country}".encode()).hexdigest()[:32]

    @property
    def generation_key(self) -> str:
        """The counter of the scope's pages: bumped by each vote and each publication in it."""
        return f"anb:gen:{self.digest}"

    @property
    def members_key(self) -> str:
        """The counter of the scope's membership: bumped only when a video enters or leaves
        its public list (publication), never by a vote. It keys the list's count, pages and
        anchors."""
        return f"anb:members:{self.digest}"

    def cache_key(self, kind: str, cache: Cache) -> str:
        """The key of this scope's `kind` entry at the scope's current generation: for what a
        vote changes (a ranking page)."""
        return self.entry_key(kind, self._current(self.generation_key, cache))

    def membership(self, cache: Cache) -> str:
        """The scope's current membership, which keys what only a publication changes (the
        list's count, its pages, their anchors): read once per request, for all of them."""
        return self._current(self.members_key, cache)

    def peeked_cache_key(self, kind: str, cache: Cache) -> str | None:
        """`cache_key` if this process has the scope's generation at hand, else None."""
        generation = cache.peek(self.generation_key)
        return None if generation is None else self.entry_key(kind, generation)

    def peeked_membership(self, cache: Cache) -> str | None:
        """`membership` if this process has it at hand, else None."""
        return cache.peek(self.members_key)

    @staticmethod
    def _current(counter: str, cache: Cache) -> str:
        generation = cache.get(counter)
        if generation is None:  # never bumped: start counting, so it can be peeked at
            generation = str(cache.incr(counter))
        return generation

    def entry_key(self, kind: str, generation: str) -> str:
        """The key of this scope's `kind` entry at `generation` (of either counter)."""
        return f"anb:{kind}:{self.digest}:{generation}"

    @classmethod
    def containing(cls, city: str, country: str) -> list[Scope]:
        """The scopes whose views include a player of this (folded) city and country."""
        return [cls(), cls(city=city), cls(country=country), cls(city, country)]

    def where(self, query: Select[*Row], *, keys: type[User] | type[Video] = User) -> Select[*Row]:
        """`query` filtered to the scope, on the keys of `keys`' table: the players' (rankings)
        or the copies on the videos (the public list)."""
        if self.city:
            query = query.where(keys.city_key == self.city)
        if self.country:
            query = query.where(keys.country_key == self.country)
        return query

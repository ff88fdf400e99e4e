"""The public pages' query rules, and the answer to reads of pages this process has at
hand, given before routing.

Most reads of the public list and the rankings are of a few hot pages, the same for every
caller (the rankings; the list without a token). When
the page is at hand (`Cache.peek`: no I/O), `CachedPublicPages` answers it directly, which
skips routing and dependency solving (most of a cached read's cost). Anything it does not
recognise as a plain, valid query falls through to the API, which answers it (or says what
is wrong with it) as usual.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from anb.cache import get_cache
from anb.core.settings import get_settings
from anb.public import service
from anb.public.scopes import Scope as Filter

FILTER_MAX_CHARS = 100
LIMIT_MAX = 100
OFFSET_MAX = 1_000_000
VIDEOS_PER_PAGE = 20
RANKED_PER_PAGE = 10
VIDEOS_PATH = "/api/public/videos"
RANKINGS_PATH = "/api/public/rankings"
_DEFAULT_LIMITS = {VIDEOS_PATH: VIDEOS_PER_PAGE, RANKINGS_PATH: RANKED_PER_PAGE}


class CachedPublicPages:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _at_hand(scope) if _is_page_read_for_anyone(scope) else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        body, headers = answer
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _is_page_read_for_anyone(scope: Scope) -> bool:
    """A GET of a page that is the same for every caller: the rankings, or the public list
    without a token (with one, `voted` depends on the caller, and a bad token is a 401)."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    if scope["path"] == RANKINGS_PATH:
        return True
    signed = any(name == b"authorization" for name, _ in scope["headers"])
    return scope["path"] == VIDEOS_PATH and not signed


def _at_hand(scope: Scope) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    query = _plain_query(scope["query_string"], default_limit=_DEFAULT_LIMITS[scope["path"]])
    if query is None:
        return None
    city, country, limit, offset = query
    page_scope = Filter.of(city, country)
    cache = get_cache()
    if scope["path"] == RANKINGS_PATH:
        page = service.peek_rankings_page(cache, scope=page_scope, limit=limit, offset=offset)
        return None if page is None else (page.encode(), [])
    base_url = get_settings().base_url_for(str(Request(scope).base_url))
    found = service.peek_public_videos_page(
        cache, scope=page_scope, limit=limit, offset=offset, base_url=base_url
    )
    if found is None:
        return None
    headers = list_headers(found, city=city, country=country, limit=limit)
    return found.body.encode(), [
        (name.lower().encode(), value.encode()) for name, value in headers.items()
    ]


def list_headers(
    page: service.VideosPage, *, city: str | None, country: str | None, limit: int
) -> dict[str, str]:
    """The headers of a page of the public list: its total, and where the next page is
    (`X-Next-Cursor`, and an RFC 8288 `Link` to it relative to this server), if any."""
    headers = {"X-Total-Count": str(page.total)}
    if page.next_cursor is not None:
        filters = {name: value for name, value in (("city", city), ("country", country)) if value}
        query = urlencode({**filters, "limit": limit, "cursor": page.next_cursor})
        headers["X-Next-Cursor"] = page.next_cursor
        headers["Link"] = f'<{VIDEOS_PATH}?{query}>; rel="next"'
    return headers


def _plain_query(query_string: bytes, *, default_limit: int) -> tuple[str, str, int, int] | None:
    """(city, country, limit, offset) of a query the API would accept as it is; None for
    anything else (repeated or odd values are left to the API's own validation)."""
    values: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in values:
            return None
        values[name] = value
    if "cursor" in values:  # a page after a cursor is never kept at hand
        return None
    city, country = values.get("city", ""), values.get("country", "")
    if any(len(text) > FILTER_MAX_CHARS or "\x00" in text for text in (city, country)):
        return None
    limit = _bounded(values.get("limit"), default_limit, 1, LIMIT_MAX)
    offset = _bounded(values.get("offset"), 0, 0, OFFSET_MAX)
    if limit is None or offset is None:
        return None
    return city, country, limit, offset


def _bounded(text: str | None, default: int, low: int, high: int) -> int | None:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if low <= number <= high else None

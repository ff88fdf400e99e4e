"""Locust users of the capacity tests (started by benchmarks.loadtest, which seeds the data).

- `UploadUser`: a player logs in once, then uploads a real 1080p MP4 through the API
  (`POST /api/videos/upload`) again and again.
- `DirectUploadUser`: the same player, uploading the file straight to storage instead:
  `POST /api/videos/uploads` (a presigned form), the form POSTed to its `upload_url` (moto's
  S3: the bytes never reach the API), then `POST /api/videos/{id}/complete`.
- `PublicUser`: the public: lists of published videos (all, by city), city rankings, votes
  (one per video per user), and logins now and then.

Environment: LOADTEST_SEED (JSON written by benchmarks.loadtest: accounts, password, public
video ids, cities), LOADTEST_UPLOAD (the MP4 the uploaders send), LOADTEST_ACCOUNT_OFFSET
(first account of this run), LOADTEST_REQUESTS (CSV written at exit: one row per request,
for windows and time series that Locust's own CSVs do not give).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from locust import HttpUser, between, events, task

SEED = json.loads(Path(os.environ["LOADTEST_SEED"]).read_text())
_upload_path = os.environ.get("LOADTEST_UPLOAD")
UPLOAD = Path(_upload_path).read_bytes() if _upload_path else b""
TITLE = "Mi mejor jugada"
SESSION_START = "POST /api/auth/login (session start)"
REQUEST_TIMEOUT_S = 60
"""A request still unanswered after this fails (and is logged) instead of hanging."""
COMPLETES_UPLOAD = {"completes_upload": True}
"""Request context of the request that finishes an upload (the video exists once it is OK)."""
# Each phase (a separate Locust run) starts at its own offset, so that no account is shared
# by two users and no voter repeats a vote cast in an earlier phase.
_OFFSET = int(os.environ.get("LOADTEST_ACCOUNT_OFFSET", "0"))
_uploaders = itertools.count(_OFFSET)
_voters = itertools.count(_OFFSET)
_rows: list[tuple[float, str, float, int, int, int, int]] = []
_environment = None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    global _environment
    _environment = environment


@events.request.add_listener
def _on_request(name, response_time, exception, context=None, url="", **kwargs) -> None:
    """One row per request: when it started, whether it went to the API (not to storage),
    whether it completed an upload."""
    users = _environment.runner.user_count if _environment and _environment.runner else 0
    started = kwargs.get("start_time") or time.time() - response_time / 1000
    host = _environment.host if _environment else ""
    failed = exception is not None
    to_api = bool(host) and str(url).startswith(host)
    uploaded = not failed and bool((context or {}).get("completes_upload"))
    _rows.append((started, name, response_time, int(failed), users, int(to_api), int(uploaded)))


@events.quitting.add_listener
def _on_quitting(**_kwargs) -> None:
    target = os.environ.get("LOADTEST_REQUESTS")
    if target:
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["time", "name", "ms", "failed", "users", "api", "upload"])
            writer.writerows(_rows)


def failure_of(response) -> str:
    """The body of an error answer, or the client-side error when there was no answer."""
    return repr(response.error) if response.status_code == 0 else response.text[:200]


class MultipartBody:
    """A multipart/form-data body of text fields and then one file part. Sent as its three
    pieces (headers, the file's bytes, the closing boundary), so a 50 MB file is neither
    copied nor re-encoded per request, and the length is known (no chunked encoding)."""

    def __init__(self, fields: dict[str, str], file_field: str, content: bytes) -> None:
        boundary = uuid.uuid4().hex
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            'filename="jugada.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        )
        self.parts = (head.encode(), content, f"\r\n--{boundary}--\r\n".encode())
        self.content_type = f"multipart/form-data; boundary={boundary}"

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)


class Player(HttpUser):
    abstract = True
    wait_time = between(1, 3)
    token = ""

    def request(self, method: str, url: str, *, name: str, **kwargs):
        return self.client.request(method, url, name=name, timeout=REQUEST_TIMEOUT_S, **kwargs)

    def checked(self, method: str, url: str, *, name: str, ok: tuple[int, ...], **kwargs):
        """The request, marked failed unless its status is in `ok`; the response when OK,
        else None."""
        with self.request(method, url, name=name, catch_response=True, **kwargs) as response:
            if response.status_code in ok:
                return response
            response.failure(f"{name}: {response.status_code}: {failure_of(response)}")
            return None

    def login(self, email: str, name: str) -> None:
        body = {"email": email, "password": SEED["password"]}
        if response := self.checked("POST", "/api/auth/login", name=name, ok=(200,), json=body):
            self.token = response.json()["access_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Uploader(Player):
    """Logs in once, then uploads LOADTEST_UPLOAD in a loop (logging in again if needed)."""

    abstract = True

    def on_start(self) -> None:
        self.email = SEED["uploaders"][next(_uploaders) % len(SEED["uploaders"])]
        self.login(self.email, SESSION_START)

    @task
    def upload_once(self) -> None:
        if not self.token:
            self.login(self.email, SESSION_START)
            return
        self.upload()

    def upload(self) -> None:
        raise NotImplementedError


class UploadUser(Uploader):
    def upload(self) -> None:
        body = MultipartBody({"title": TITLE}, "video_file", UPLOAD)
        self.checked(
            "POST", "/api/videos/upload", name="POST /api/videos/upload", ok=(201,),
            data=body, headers={**self.auth, "Content-Type": body.content_type},
            context=COMPLETES_UPLOAD,
        )  # fmt: skip


class DirectUploadUser(Uploader):
    def upload(self) -> None:
        granted = self.checked(
            "POST", "/api/videos/uploads", name="POST /api/videos/uploads", ok=(201,),
            json={"title": TITLE, "size": len(UPLOAD)}, headers=self.auth,
        )  # fmt: skip
        if granted is None:
            return
        grant = granted.json()
        if not self.send_to_storage(grant["upload_url"], grant["upload_fields"]):
            return
        self.checked(
            "POST", f"/api/videos/{grant['video_id']}/complete",
            name="POST /api/videos/{id}/complete", ok=(202,), headers=self.auth,
            context=COMPLETES_UPLOAD,
        )  # fmt: skip

    def send_to_storage(self, url: str, fields: dict[str, str]) -> bool:
        """POST the presigned form to storage; only to the host under test's machine."""
        name = "POST {upload_url} (storage)"
        if urlsplit(url).hostname != urlsplit(self.host).hostname:
            refused = RuntimeError(f"upload_url {url!r} is not on {self.host}: not sent")
            self.environment.events.request.fire(
                request_type="POST", name=name, response_time=0, response_length=0,
                exception=refused, context={}, url=url,
            )  # fmt: skip
            return False
        body = MultipartBody(fields, "file", UPLOAD)
        headers = {"Content-Type": body.content_type}
        return self.checked("POST", url, name=name, ok=(200, 201, 204), data=body,
                            headers=headers) is not None  # fmt: skip


class PublicMix(Player):
    """Lists, rankings and votes after one login."""

    abstract = True

    def on_start(self) -> None:
        self.email = SEED["voters"][next(_voters) % len(SEED["voters"])]
        self.unvoted = list(SEED["public_videos"])
        random.shuffle(self.unvoted)
        self.login(self.email, SESSION_START)

    @task(4)
    def list_videos(self) -> None:
        params = {"limit": 20}
        if random.random() < 0.5:
            params["city"] = random.choice(SEED["cities"])
        headers = self.auth if self.token and random.random() < 0.5 else {}
        self.request("GET", "/api/public/videos", params=params, headers=headers,
                     name="GET /api/public/videos")  # fmt: skip

    @task(3)
    def rankings(self) -> None:
        params = {"city": random.choice(SEED["cities"])} if random.random() < 0.7 else {}
        self.request("GET", "/api/public/rankings", params=params, name="GET /api/public/rankings")

    @task(2)
    def vote(self) -> None:
        if not self.token or not self.unvoted:
            return
        video_id = self.unvoted.pop()
        self.request("POST", f"/api/public/videos/{video_id}/vote", headers=self.auth,
                     name="POST /api/public/videos/{id}/vote")  # fmt: skip


class PublicUser(PublicMix):
    """The public mix, logging in again now and then."""

    @task(1)
    def login_again(self) -> None:
        self.login(self.email, "POST /api/auth/login")


class VoterUser(PublicMix):
    """The public mix as real voters behave: one login per session, never again."""

"""Locust users of the capacity tests (started by scripts/loadtest, which seeds the data).

- `UploadUser`: a player logs in once, then uploads a real 21 s 1080p MP4 again and again.
- `PublicUser`: the public: lists of published videos (all, by city), city rankings, votes
  (one per video per user), and logins now and then.

Environment: LOADTEST_SEED (JSON written by scripts/loadtest: accounts, password, clip path,
public video ids, cities), LOADTEST_ACCOUNT_OFFSET (first account of this run),
LOADTEST_REQUESTS (CSV written at exit: one row per request, for
windows and time series that Locust's own CSVs do not give).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import time
from pathlib import Path

from locust import HttpUser, between, events, task

SEED = json.loads(Path(os.environ["LOADTEST_SEED"]).read_text())
CLIP = Path(SEED["clip"]).read_bytes()
# Each phase (a separate Locust run) starts at its own offset, so that no account is shared
# by two users and no voter repeats a vote cast in an earlier phase.
_OFFSET = int(os.environ.get("LOADTEST_ACCOUNT_OFFSET", "0"))
_uploaders = itertools.count(_OFFSET)
_voters = itertools.count(_OFFSET)
_rows: list[tuple[float, str, float, int, int]] = []
_environment = None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    global _environment
    _environment = environment


@events.request.add_listener
def _on_request(name, response_time, exception, **_kwargs) -> None:
    users = _environment.runner.user_count if _environment and _environment.runner else 0
    _rows.append((time.time(), name, response_time, int(exception is not None), users))


@events.quitting.add_listener
def _on_quitting(**_kwargs) -> None:
    target = os.environ.get("LOADTEST_REQUESTS")
    if target:
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["time", "name", "ms", "failed", "users"])
            writer.writerows(_rows)


def failure_of(response) -> str:
    """The body of an error answer, or the client-side error when there was no answer."""
    return repr(response.error) if response.status_code == 0 else response.text[:200]


class Player(HttpUser):
    abstract = True
    wait_time = between(1, 3)
    token = ""

    def login(self, email: str, name: str) -> None:
        with self.client.post(
            "/api/auth/login",
            json={"email": email, "password": SEED["password"]},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                self.token = response.json()["access_token"]
            else:
                response.failure(f"login {response.status_code}: {failure_of(response)}")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class UploadUser(Player):
    def on_start(self) -> None:
        self.email = SEED["uploaders"][next(_uploaders) % len(SEED["uploaders"])]
        self.login(self.email, "POST /api/auth/login (session start)")

    @task
    def upload(self) -> None:
        if not self.token:
            self.login(self.email, "POST /api/auth/login (session start)")
            return
        with self.client.post(
            "/api/videos/upload",
            headers=self.auth,
            files={"video_file": ("jugada.mp4", CLIP, "video/mp4")},
            data={"title": "Mi mejor jugada"},
            name="POST /api/videos/upload",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"upload {response.status_code}: {failure_of(response)}")


class PublicUser(Player):
    def on_start(self) -> None:
        self.email = SEED["voters"][next(_voters) % len(SEED["voters"])]
        self.unvoted = list(SEED["public_videos"])
        random.shuffle(self.unvoted)
        self.login(self.email, "POST /api/auth/login (session start)")

    @task(4)
    def list_videos(self) -> None:
        params = {"limit": 20}
        if random.random() < 0.5:
            params["city"] = random.choice(SEED["cities"])
        headers = self.auth if self.token and random.random() < 0.5 else {}
        self.client.get("/api/public/videos", params=params, headers=headers,
                        name="GET /api/public/videos")  # fmt: skip

    @task(3)
    def rankings(self) -> None:
        params = {"city": random.choice(SEED["cities"])} if random.random() < 0.7 else {}
        self.client.get("/api/public/rankings", params=params, name="GET /api/public/rankings")

    @task(2)
    def vote(self) -> None:
        if not self.token or not self.unvoted:
            return
        video_id = self.unvoted.pop()
        self.client.post(f"/api/public/videos/{video_id}/vote", headers=self.auth,
                         name="POST /api/public/videos/{id}/vote")  # fmt: skip

    @task(1)
    def login_again(self) -> None:
        self.login(self.email, "POST /api/auth/login")

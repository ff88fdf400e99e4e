"""Shared plumbing: text folding, the memory cache, settings and the persistent secret."""

import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from anb.cache.memory import MemoryCache
from anb.core.settings import Settings
from anb.core.text import search_key
from tests.support.servers import anb_serve_command, free_port, server_env


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Bogotá", "bogota"),
        ("  MEDELLÍN ", "medellin"),
        ("São  Paulo", "sao paulo"),
        ("Ñuñoa", "nunoa"),
    ],
)
def test_search_key_folds_case_accents_and_spaces(raw: str, folded: str) -> None:
    assert search_key(raw) == folded


def test_memory_cache_expires_entries_and_evicts_the_least_recent() -> None:
    cache = MemoryCache(max_entries=2)
    cache.set("a", "1", ttl_seconds=60)
    cache.set("b", "2", ttl_seconds=60)
    assert cache.get("a") == "1"  # "b" is now the least recent
    cache.set("c", "3", ttl_seconds=60)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("1", None, "3")
    cache.set("d", "4", ttl_seconds=0)
    assert cache.get("d") is None


def test_memory_cache_counters_survive_eviction() -> None:
    cache = MemoryCache(max_entries=1)
    assert cache.incr("gen") == 1
    for index in range(5):
        cache.set(f"k{index}", "v", ttl_seconds=60)
    assert cache.incr("gen") == 2
    assert cache.get("gen") == "2"


def test_unset_jwt_secret_is_random_persistent_and_private(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).signing_secret
    second = Settings(data_dir=tmp_path).signing_secret
    assert first == second and len(first) >= 43
    assert Settings(data_dir=tmp_path / "other").signing_secret != first
    mode = stat.S_IMODE(os.stat(tmp_path / "jwt-secret").st_mode)
    assert mode == 0o600


def test_concurrent_starters_agree_on_one_secret(tmp_path: Path) -> None:
    secrets: list[str] = []
    start = time.monotonic() + 0.1

    def read() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        secrets.append(Settings(data_dir=tmp_path).signing_secret)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(secrets)) == 1


def test_a_configured_secret_wins(tmp_path: Path) -> None:
    configured = "configured-" + "x" * 32
    assert Settings(data_dir=tmp_path, jwt_secret=configured).signing_secret == configured
    assert not (tmp_path / "jwt-secret").exists()


@pytest.mark.parametrize("secret", ["x", "a" * 31, "\u00e9" * 15])
def test_a_short_jwt_secret_is_refused_at_start(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(data_dir=tmp_path, jwt_secret=secret)


def test_anb_serve_refuses_to_start_with_a_short_secret(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", ANB_JWT_SECRET="x")
    started = subprocess.run(
        anb_serve_command(free_port()), env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    assert "ANB_JWT_SECRET: Value error, must be at least 32 bytes" in started.stderr
    assert "Traceback" not in started.stderr


def test_the_public_base_url_is_an_http_url_kept_with_one_slash() -> None:
    assert Settings(public_base_url="https://anb.example.com").public_base_url == (
        "https://anb.example.com/"
    )
    assert Settings(public_base_url="http://10.0.0.5:8000/anb/").public_base_url == (
        "http://10.0.0.5:8000/anb/"
    )
    for wrong in ("anb.example.com", "ftp://anb.example.com", "https://a.example.com/?x=1"):
        with pytest.raises(ValidationError, match="http"):
            Settings(public_base_url=wrong)

"""Configuration: every setting comes from an `ANB_` environment variable."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from functools import cached_property, lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32  # HS256's key length (RFC 7518, section 3.2)

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANB_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Path(".anb")
    database_url: str | None = None
    database_ca_file: Path | None = None
    storage_url: str | None = None
    queue_url: str = "local"
    cache_url: str = "memory://"
    jwt_secret: str | None = None
    jwt_ttl_seconds: int = Field(3600, ge=60)
    url_ttl_seconds: int = Field(3600, ge=60)
    upload_max_bytes: int = Field(100 * MIB, ge=1)
    upload_min_seconds: float = Field(20, ge=0)
    upload_max_seconds: float = Field(60, gt=0)
    upload_min_short_side: int = Field(1080, ge=1)
    upload_max_long_side: int = Field(4096, ge=1)
    upload_max_fps: float = Field(240.0, gt=0)
    max_open_uploads: int = Field(5, ge=1)
    ffmpeg: str | None = None
    cors_origins: str = ""
    trusted_proxies: str = ""
    public_base_url: str = ""
    login_rate_limit: str = "10/300"
    signup_rate_limit: str = "20/3600"
    vote_rate_limit: str = "60/60"
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_attempts: int = Field(3, ge=1)
    worker_concurrency: int = Field(1, ge=1, le=64)
    poll_batch: int = Field(1, ge=1, le=10)
    poll_wait_seconds: int = Field(20, ge=0, le=20)
    heartbeat_seconds: int = Field(30, ge=1)
    job_timeout_seconds: int = Field(900, ge=10)
    db_pool_size: int = Field(8, ge=1, le=100)
    storage_threads: int = Field(8, ge=1, le=100)
    password_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    max_wait_seconds: float = Field(0.5, gt=0, le=60)
    password_max_wait_seconds: float = Field(2.0, gt=0, le=60)

    @field_validator("queue_url")
    @classmethod
    def _known_queue(cls, url: str) -> str:
        if url != "local" and not url.startswith(("https://", "http://")):
            raise ValueError("must be 'local' or the URL of an SQS queue")
        return url

    @field_validator("cache_url")
    @classmethod
    def _known_cache(cls, url: str) -> str:
        if not url.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be 'memory://' or a redis:// (rediss://) URL")
        return url

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, url: str | None) -> str | None:
        if url and "://" in url and not url.startswith("s3://"):
            raise ValueError("must be a directory or an s3://bucket/prefix URL")
        return url

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: str | None) -> str | None:
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes of random text (HS256 tokens and"
                " file URLs are signed with it); unset, a random one is generated"
            )
        return secret

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        if url and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", url):
            raise ValueError("must be an http(s) URL such as https://anb.example.com")
        return url.rstrip("/") + "/" if url else url

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for item in _listed(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network: list the proxies' addresses or"
                    " networks (e.g. the VPC's CIDR); '*' would let any client pick its address"
                ) from None
        return value

    @field_validator("login_rate_limit", "signup_rate_limit", "vote_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        count, _, seconds = value.partition("/")
        if value != "off" and not (count.isdigit() and seconds.isdigit() and int(seconds) > 0):
            raise ValueError("must be COUNT/SECONDS (e.g. 10/300) or 'off'")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return _listed(self.cors_origins)

    def base_url_for(self, request_base_url: str) -> str:
        """Where clients reach the API: ANB_PUBLIC_BASE_URL, or else the request's own
        scheme and Host (which a client can write)."""
        return self.public_base_url or request_base_url

    @property
    def trusted_proxy_list(self) -> list[str]:
        """Addresses and networks whose X-Forwarded-For/-Proto headers are believed."""
        return _listed(self.trusted_proxies)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'anb.db'}"

    @property
    def media_dir(self) -> Path:
        return Path(self.storage_url) if self.storage_url else self.data_dir / "media"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space for uploads in flight, on the data dir's file system."""
        return self.data_dir / "tmp"

    @cached_property
    def signing_secret(self) -> str:
        """The JWT secret; when unset, a random one created once and kept in the data dir."""
        return self.jwt_secret or _persistent_secret(self.data_dir / "jwt-secret")


def _persistent_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    draft.write_text(secrets.token_urlsafe(48))
    draft.chmod(0o600)
    try:
        os.link(draft, path)  # atomic and exclusive: concurrent starters agree on one secret
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _listed(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]

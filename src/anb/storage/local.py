"""Storage in a local directory, with HMAC-signed expiring URLs served by the API."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from anb.core.security import sign, signature_matches

FILES_ROUTE = "/api/files/"
UPLOADS_ROUTE = "/api/uploads"


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"invalid storage key: {key!r}")
        return path

    def put_file(self, source: Path, key: str) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.move(source, partial)  # a rename when source is on the same file system
        os.replace(partial, target)  # readers never see a half-written object

    def get_file(self, key: str, target: Path) -> None:
        shutil.copyfile(self.path_of(key), target)

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def size(self, key: str) -> int | None:
        """None when there is no such file, also when it goes (is moved) while looked at:
        one stat, not a check and then a stat that a concurrent move can fall between."""
        try:
            status = self.path_of(key).stat()
        except FileNotFoundError:
            return None
        return status.st_size if stat.S_ISREG(status.st_mode) else None

    def move(self, source_key: str, target_key: str) -> None:
        target = self.path_of(target_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = self.path_of(source_key)
        os.replace(source, target)
        _remove_empty_parents(source.parent, self.root)

    def keys(self, prefix: str) -> list[str]:
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".")
            and path.relative_to(self.root).as_posix().startswith(prefix)
        )  # fmt: skip

    def delete(self, *keys: str) -> None:
        for key in keys:
            path = self.path_of(key)
            path.unlink(missing_ok=True)
            _remove_empty_parents(path.parent, self.root)

    def url(self, key: str, *, expires_in: int, base_url: str) -> str:
        expires = int(time.time()) + expires_in
        query = urlencode({"expires": expires, "signature": sign(f"{key}\n{expires}")})
        return f"{base_url.rstrip('/')}{FILES_ROUTE}{quote(key)}?{query}"

    def upload_form(
        self, key: str, *, max_bytes: int, expires_in: int, base_url: str
    ) -> tuple[str, dict[str, str]]:
        expires = int(time.time()) + expires_in
        fields = {"key": key, "expires": str(expires), "max_bytes": str(max_bytes)}
        fields["signature"] = sign(upload_policy(fields))
        return f"{base_url.rstrip('/')}{UPLOADS_ROUTE}", fields

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"{self.root} is not writable")


def upload_policy(fields: dict[str, str]) -> str:
    """What an upload form's signature covers."""
    return f"upload\n{fields.get('key')}\n{fields.get('expires')}\n{fields.get('max_bytes')}"


def signed_url_is_valid(key: str, expires: int, signature: str) -> bool:
    return expires >= time.time() and signature_matches(f"{key}\n{expires}", signature)


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent

"""Downloads of locally stored files through their signed, expiring URLs (embedded mode)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from anb.core.deps import StorageDep
from anb.core.errors import Forbidden, NotFound
from anb.core.responses import error_responses
from anb.storage.local import LocalStorage, signed_url_is_valid

router = APIRouter(tags=["files"], include_in_schema=False)


class FileNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Archivo no encontrado.")


@router.get("/api/files/{key:path}", responses=error_responses(403, 404))
def download(
    key: str,
    storage: StorageDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    if not signed_url_is_valid(key, expires, signature):
        raise Forbidden("El enlace no es válido o ha expirado.")
    if not isinstance(storage, LocalStorage):
        raise FileNotFound()
    try:
        path = storage.path_of(key)
    except ValueError as exc:
        raise FileNotFound() from exc
    if not path.is_file():
        raise FileNotFound()
    return FileResponse(
        path, media_type="video/mp4", filename=path.name, content_disposition_type="inline"
    )

"""Downloads of locally stored files through their signed, expiring URLs (embedded mode)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from anb.core.deps import SettingsDep
from anb.core.errors import Forbidden, InvalidInput, NotFound
from anb.core.multipart import read_request_form
from anb.core.responses import error_responses
from anb.core.security import signature_matches
from anb.storage.base import content_type
from anb.storage.deps import StorageDep
from anb.storage.local import LocalStorage, signed_url_is_valid, upload_policy

router = APIRouter(tags=["files"], include_in_schema=False)


class FileNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Archivo no encontrado.")


@router.post("/api/uploads", status_code=204, responses=error_responses(400, 403))
async def direct_upload(request: Request, storage: StorageDep, settings: SettingsDep) -> Response:
    """The embedded counterpart of an S3 presigned POST: signed form fields, then `file`.
    The fields are judged before any byte of the file is stored (a forged form costs
    nothing but its first part)."""
    form = await read_request_form(
        request, file_field="file", settings=settings, check=_signed_form_limit
    )
    try:
        if "file" not in form.files:
            _signed_form_limit(form.fields)
            raise InvalidInput("file: campo requerido.")
        await run_in_threadpool(storage.put_file, form.files["file"], form.fields["key"])
    finally:
        form.discard()
    return Response(status_code=204)


def _signed_form_limit(fields: dict[str, str]) -> int:
    """The file's most bytes, if the form's signature holds and it has not expired;
    `Forbidden` otherwise."""
    if not (fields.get("expires", "").isdigit() and fields.get("max_bytes", "").isdigit()):
        raise Forbidden("El formulario de carga no es válido.")
    policy_ok = signature_matches(upload_policy(fields), fields.get("signature", ""))
    if not policy_ok or int(fields["expires"]) < time.time():
        raise Forbidden("El formulario de carga no es válido o ha expirado.")
    return int(fields["max_bytes"])


@router.api_route(
    "/api/files/{key:path}", methods=["GET", "HEAD"], responses=error_responses(403, 404)
)
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
        path, media_type=content_type(key), filename=path.name, content_disposition_type="inline"
    )

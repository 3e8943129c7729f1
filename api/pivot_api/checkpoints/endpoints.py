from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pivot_api.checkpoints.schemas import CheckpointList, CheckpointUploaded
from pivot_api.deps import Checkpoints
from pivot_api.schemas import ErrorResponse, MessageResponse

router = APIRouter(
    prefix="/checkpoints",
    tags=["checkpoints"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)

Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: {"model": ErrorResponse, "description": "No such checkpoint"}}

# The body is parsed by hand (streamed to S3), so its schema is declared here. Fields are
# listed before `file`: clients that send them first let the upload skip the disk spool.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["session_id", "epoch", "file"],
                    "properties": {
                        "session_id": {"type": "string", "minLength": 1},
                        "epoch": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
                        "metrics": {
                            "type": "string",
                            "description": 'JSON object of metric values, e.g. {"val_loss": 0.3}',
                        },
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


@router.get("", response_model=CheckpointList)
async def list_checkpoints(
    checkpoints: Checkpoints,
    session_id: Annotated[
        Annotated[str, Field(min_length=1)] | SkipJsonSchema[None], Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> CheckpointList:
    """Committed checkpoints (those with a manifest), newest first."""
    return await checkpoints.list(session_id=session_id, limit=limit)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckpointUploaded,
    openapi_extra=_UPLOAD_BODY,
    responses={
        404: {"model": ErrorResponse, "description": "No such session"},
        413: {"model": ErrorResponse, "description": "File larger than the upload limit"},
    },
)
async def upload_checkpoint(request: Request, checkpoints: Checkpoints) -> CheckpointUploaded:
    """Upload a `.pth` file for a session; it streams to S3 in parts, never whole in memory."""
    return await checkpoints.upload(request)


def _disposition(name: str) -> str:
    # An ASCII fallback plus RFC 5987's UTF-8 form; the name is already sanitised.
    return f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"


@router.get(
    "/{checkpoint_id}/download",
    response_class=StreamingResponse,
    responses={
        **_NOT_FOUND,
        200: {"content": {"application/octet-stream": {}}, "description": "The checkpoint file"},
        307: {"description": "Redirect to a presigned S3 URL (when so configured)"},
    },
)
async def download_checkpoint(checkpoint_id: str, checkpoints: Checkpoints) -> Any:
    download = await checkpoints.download(checkpoint_id)
    if download.url is not None:
        return RedirectResponse(download.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    assert download.chunks is not None
    return StreamingResponse(
        download.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": _disposition(download.file_name),
            "Content-Length": str(download.manifest.size_bytes),
            "X-Checkpoint-SHA256": download.manifest.sha256,
        },
    )


@router.delete("/{checkpoint_id}", response_model=MessageResponse, responses=_NOT_FOUND)
async def delete_checkpoint(checkpoint_id: str, checkpoints: Checkpoints) -> MessageResponse:
    await checkpoints.delete(checkpoint_id)
    return MessageResponse(message="Checkpoint deleted successfully")

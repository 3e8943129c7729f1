"""Model serving routes: /models (deploy, list, get, update, delete) and predictions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from pivot_api.deps import Models
from pivot_api.errors import PayloadTooLargeError
from pivot_api.models.schemas import (
    DeployModelRequest,
    ModelDeleted,
    ModelDetail,
    ModelList,
    PredictResponse,
    UpdateModelRequest,
)
from pivot_api.schemas import ErrorResponse

router = APIRouter(
    prefix="/models",
    tags=["models"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such model"}
}

_PREDICTION_EXAMPLE = {
    "model": "lesions",
    "checkpoint_id": "ckpt_sess-abc123_e00042",
    "sha256": "9f2c…",
    "predictions": [
        {
            "shape": [256, 256],
            "candidates": [{"x": 131.4, "y": 77.9, "probability": 0.97, "area": 58}],
        }
    ],
    "timing": {"queue_ms": 3.1, "inference_ms": 11.8, "total_ms": 15.6, "batch_size": 4},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelDetail,
    responses={409: {"model": ErrorResponse, "description": "The name is taken"}},
)
async def deploy_model(body: DeployModelRequest, models: Models) -> ModelDetail:
    """Serve a checkpoint: a ModelServer resource, which the operator turns into pods that
    load it, verify its sha256 and warm up before they take requests."""
    return await models.deploy(body)


@router.get("", response_model=ModelList)
async def list_models(models: Models) -> ModelList:
    return await models.list_all()


@router.get("/{name}", response_model=ModelDetail, responses=_NOT_FOUND)
async def get_model(name: str, models: Models) -> ModelDetail:
    return await models.get(name)


@router.patch("/{name}", response_model=ModelDetail, responses=_NOT_FOUND)
async def update_model(name: str, body: UpdateModelRequest, models: Models) -> ModelDetail:
    """Scale (`replicas`) or serve another checkpoint (`checkpoint`): new pods are Ready
    before old ones go, so no request fails on the way."""
    return await models.update(name, body)


@router.delete("/{name}", response_model=ModelDeleted, responses=_NOT_FOUND)
async def delete_model(name: str, models: Models) -> ModelDeleted:
    await models.delete(name)
    return ModelDeleted(message=f"model {name} deleted")


@router.post(
    "/{name}/predict",
    responses={
        200: {
            "model": PredictResponse,
            "content": {"application/json": {"example": _PREDICTION_EXAMPLE}},
            "description": "The lesion candidates of each image, with the model, checkpoint "
            "and timing that produced them.",
        },
        400: {"model": ErrorResponse, "description": "Not an image the model can take"},
        413: {"model": ErrorResponse, "description": "Body over PIVOT_PREDICT_MAX_BYTES"},
        503: {"model": ErrorResponse, "description": "No replica is ready (Retry-After)"},
        **_NOT_FOUND,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "PNG (8 or 16 bit grayscale) or .npy images",
                            }
                        },
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["images"],
                        "properties": {
                            "images": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["data"],
                                    "properties": {
                                        "data": {"type": "string", "format": "byte"},
                                        "format": {"type": "string", "enum": ["png", "npy"]},
                                    },
                                },
                            },
                            "return_mask": {"type": "boolean"},
                        },
                    }
                },
            },
        }
    },
)
async def predict(
    name: str,
    request: Request,
    models: Models,
    return_mask: Annotated[
        bool, Query(description="Add each image's probability map as a base64 PNG.")
    ] = False,
) -> Response:
    """Find lesions in images: forwarded to a Ready replica of the model, which batches
    requests that arrive together. `?return_mask=true` adds each probability map as a PNG."""
    ready_replicas = await models.open_predict(name)
    limit = request.app.state.settings.predict_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is over {limit} bytes", {"max_bytes": limit})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over {limit} bytes", {"max_bytes": limit})
        chunks.append(chunk)
    answer = await models.predict(
        name,
        b"".join(chunks),
        request.headers.get("content-type", "application/octet-stream"),
        request.url.query,
        ready_replicas=ready_replicas,
    )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.content_type)

"""`/docs` (Swagger UI) and `/redoc` with their JavaScript and CSS served by the API itself,
so the documentation works with no internet (an air-gapped cluster, `pivot up` offline).

FastAPI's own pages load them from a CDN. The files come from the `fastapi-offline` wheel (a
dependency of the `api` extra: Swagger UI under Apache-2.0, ReDoc under MIT), served from
`/docs/assets/<name>`; these paths are public like the pages (pivot_api.security).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
# name -> media type: the only files served (nothing else of the package's folder is).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"
# The files change only with the package: a day in caches is safe.
_CACHE = {"Cache-Control": "public, max-age=86400"}


def public_paths() -> frozenset[str]:
    """The pages and their assets: neither keyed nor rate limited."""
    return frozenset({DOCS_URL, REDOC_URL, *(f"{ASSETS_URL}/{name}" for name in ASSETS)})


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """The two pages and their assets (create the app with docs_url=None, redoc_url=None)."""
    missing = [name for name in ASSETS if not (_ASSET_DIR / name).is_file()]
    if missing:  # a broken install: say so at startup, not as blank pages
        raise RuntimeError(f"fastapi-offline lacks {', '.join(missing)} in {_ASSET_DIR}")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '').rstrip('/')}{ASSETS_URL}/{name}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{request.scope.get('root_path', '').rstrip('/')}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '').rstrip('/')}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,  # fonts from Google are as offline as the CDN
        )

    for name, media_type in ASSETS.items():
        app.add_api_route(
            f"{ASSETS_URL}/{name}",
            _file(_ASSET_DIR / name, media_type),
            methods=["GET"],
            include_in_schema=False,
        )


def _file(path: Path, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def serve() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers=_CACHE)

    return serve

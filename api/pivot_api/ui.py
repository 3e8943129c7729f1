"""The dashboard: its built files (api/ui -> pivot_api/ui_dist) served at /ui/.

Vite names every asset by its content hash, so /ui/assets/* is cached for a year
(`immutable`); everything else under /ui/ is the single page's index.html (the dashboard
routes in the browser), revalidated on each load (`no-cache` + ETag), so a new build is picked
up at once. Files are read once and kept in memory, gzipped when the browser takes it: the
whole dashboard is a few hundred KB. None of it is keyed: the page asks for a key itself.

Without a build (no node on the machine that set up), /ui/ answers a one-line page saying how
to build it; the API works as ever.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

UI_PREFIX = "/ui"
DIST = Path(__file__).resolve().parent / "ui_dist"
_IMMUTABLE = "public, max-age=31536000, immutable"
_COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".map", ".txt")
_MAX_CACHED = 8 * 1024 * 1024

NOT_BUILT = (
    "<!doctype html><title>PIVOT</title><p>The dashboard is not built: run "
    "<code>scripts/dev.sh up</code> on a machine with Node.js 20 or newer (or "
    "<code>npm ci &amp;&amp; npm run build</code> in <code>api/ui</code>), then reload. The "
    'API is at <a href="/docs">/docs</a>.</p>\n'
)


@dataclass(frozen=True)
class _File:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


class UiFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._files: dict[str, _File | None] = {}
        self._build: float | None = None  # index.html's mtime: a rebuild empties the cache

    @property
    def built(self) -> bool:
        return (self.root / "index.html").is_file()

    def get(self, relative: str) -> _File | None:
        try:
            build: float | None = (self.root / "index.html").stat().st_mtime
        except OSError:
            build = None
        if build != self._build:
            self._files.clear()
            self._build = build
        if relative in self._files:
            return self._files[relative]
        found = self._load(relative)
        if len(self._files) < 1000:  # bounded: every miss is a path someone asked for
            self._files[relative] = found
        return found

    def _load(self, relative: str) -> _File | None:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        if path.stat().st_size > _MAX_CACHED:
            return None
        body = path.read_bytes()
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type == "application/javascript":
            media_type += "; charset=utf-8"
        packed = gzip.compress(body, 9, mtime=0) if path.suffix in _COMPRESSIBLE else None
        if packed is not None and len(packed) >= len(body):
            packed = None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return _File(body, packed, media_type, etag)


def _respond(request: Request, file: _File, cache_control: str) -> Response:
    headers = {"Cache-Control": cache_control, "ETag": file.etag, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    body = file.body
    if file.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=file.media_type, headers=headers)


def install_ui(app: FastAPI, root: Path | None = None) -> None:
    files = UiFiles(root or DIST)

    def base(request: Request) -> str:
        return f"{request.scope.get('root_path', '').rstrip('/')}{UI_PREFIX}/"

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse(base(request), status_code=307)

    @app.get(UI_PREFIX, include_in_schema=False)
    async def ui_bare(request: Request) -> RedirectResponse:
        return RedirectResponse(base(request), status_code=307)

    @app.get(UI_PREFIX + "/{path:path}", include_in_schema=False)
    async def ui(request: Request, path: str) -> Response:
        if not files.built:
            return HTMLResponse(NOT_BUILT, headers={"Cache-Control": "no-cache"})
        if path.startswith("assets/"):
            # A hashed name that is not there is a 404, never the page: a stale tab asking
            # for last build's script must fail loudly, not parse HTML as JavaScript.
            asset = files.get(path)
            if asset is None:
                return Response("not found\n", status_code=404, media_type="text/plain")
            return _respond(request, asset, _IMMUTABLE)
        other = files.get(path) if path and path != "index.html" else None
        if other is not None:  # favicon and the like: not hashed, so revalidated
            return _respond(request, other, "no-cache")
        index = files.get("index.html")
        if index is None:
            return HTMLResponse(NOT_BUILT, headers={"Cache-Control": "no-cache"})
        return _respond(request, index, "no-cache")

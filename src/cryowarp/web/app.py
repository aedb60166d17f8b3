"""The dashboard's web application: :func:`create_app` builds it for one project.

The page and its assets come from the package (``cryowarp/web/static``), never from a CDN; the
API (docs/dashboard_api.md) reads project files only through the item layout, so a request can
name an item and an output kind but never a path. Endpoints are plain functions run in
FastAPI's thread pool, so a slow file read never blocks the others.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cryowarp.errors import CryowarpInputError
from cryowarp.web.access import COOKIE_NAME, MAX_BODY_BYTES, AccessPolicy, BodyLimit
from cryowarp.web.item_view import (
    IMAGE_KINDS,
    NAME_PATTERN,
    ItemNotFound,
    average_png,
    image_file,
    item_document,
    picks_document,
    spectrum_document,
)
from cryowarp.web.overview import RANGE_KEYS, overview_document
from cryowarp.web.project_index import IndexSnapshot, ProjectIndex
from cryowarp.web.settings_edit import (
    Selection,
    SettingsEditError,
    set_filter_ranges,
    set_selection,
)

__all__ = ["FilterRanges", "SelectionBody", "create_app"]

_ASSET_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\.(js|css|html|svg|png|ico)$")
_MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
}
_NO_STORE = {"Cache-Control": "no-store"}


class FilterRanges(BaseModel):
    """Body of ``PUT /api/filters``: the bounds to set (``null`` clears one; finite numbers)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    defocus_min_um: float | None = Field(default=None, description="µm")
    defocus_max_um: float | None = Field(default=None, description="µm")
    astigmatism_max_um: float | None = Field(default=None, description="µm")
    ctf_resolution_max_a: float | None = Field(default=None, description="Å")
    total_drift_max_a: float | None = Field(default=None, description="Å")
    early_motion_max_a_per_frame: float | None = Field(default=None, description="Å/frame")
    particles_min: int | None = Field(default=None, description="particles")
    particles_max: int | None = Field(default=None, description="particles")
    masked_fraction_max: float | None = Field(default=None, description="fraction 0–1")


assert set(FilterRanges.model_fields) == set(RANGE_KEYS)


class SelectionBody(BaseModel):
    """Body of ``PUT /api/items/{name}/selection``."""

    model_config = ConfigDict(extra="forbid")

    selection: Selection


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=_NO_STORE)


def _check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise HTTPException(400, f"not an item name: {name!r}")
    return name


def _asset(name: str) -> bytes:
    if not _ASSET_PATTERN.fullmatch(name):
        raise HTTPException(404, f"no asset {name!r}")
    resource = resources.files("cryowarp.web").joinpath("static", name)
    if not resource.is_file():
        raise HTTPException(404, f"no asset {name!r}")
    return resource.read_bytes()


class _AverageCache:
    """The last few average PNGs, by file identity (rendering one reads the whole MRC)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()

    def get(self, path: Path) -> bytes:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        data = average_png(path)
        with self._lock:
            self._entries[key] = data
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return data


def create_app(
    project_folder: str | os.PathLike[str],
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    min_refresh_interval_s: float = 0.5,
) -> FastAPI:
    """The dashboard application of the project in ``project_folder``.

    Parameters
    ----------
    project_folder:
        A project (``cryowarp init``).
    token:
        Access token; required when ``host`` is not a loopback address.
    host:
        The address the server is bound to (decides the access rule, docs/dashboard_api.md).
    min_refresh_interval_s:
        Requests within this many seconds of the last scan of the project share it.

    Raises
    ------
    MissingFileError, FileFormatError, InvalidValuesError
        ``project_folder`` holds no readable project.
    ValueError
        A non-loopback ``host`` without a token.
    """
    policy = AccessPolicy(host=host, token=token)
    index = ProjectIndex(project_folder, min_interval_s=min_refresh_interval_s)
    # Index the records now, so that the first page load finds them read (seconds for 5,000).
    threading.Thread(target=index.refresh, name="cryowarp-index", daemon=True).start()
    averages = _AverageCache()
    overview_cache: dict[str, bytes] = {}
    app = FastAPI(title="cryowarp dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit_bytes=MAX_BODY_BYTES)  # also chunked bodies

    @app.middleware("http")
    async def _guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not policy.host_allowed(request.headers.get("host")):
            return _error(400, "this dashboard answers only requests addressed to localhost")
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        query_token = request.query_params.get("token")
        if not policy.token_ok(bearer, request.cookies.get(COOKIE_NAME), query_token):
            return _error(401, "an access token is needed (the URL printed at start has it)")
        length = request.headers.get("content-length")
        too_large = _error(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return too_large
        response = await call_next(request)
        if policy.token is not None and query_token is not None:
            response.set_cookie(
                COOKIE_NAME, query_token, httponly=True, samesite="strict", path="/"
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        ]
        return _error(422, "; ".join(problems) or "malformed request", problems=problems)

    def snapshot() -> IndexSnapshot:
        return index.refresh()

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(_asset("index.html"), media_type=_MEDIA_TYPES["html"], headers=_NO_STORE)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        data = _asset(name)
        return Response(data, media_type=_MEDIA_TYPES[name.rsplit(".", 1)[1]], headers=_NO_STORE)

    @app.get("/api/overview")
    def overview(since: str | None = Query(default=None, max_length=64)) -> Response:
        current = snapshot()
        if since == current.version:
            return JSONResponse({"version": current.version, "unchanged": True}, headers=_NO_STORE)
        body = overview_cache.get(current.version)
        if body is None:
            body = json.dumps(overview_document(current), separators=(",", ":")).encode()
            overview_cache.clear()
            overview_cache[current.version] = body
        return Response(body, media_type="application/json", headers=_NO_STORE)

    @app.put("/api/filters")
    def put_filters(ranges: FilterRanges) -> dict[str, Any]:
        changes = {key: getattr(ranges, key) for key in ranges.model_fields_set}
        try:
            filters = set_filter_ranges(index.folder, changes)
        except SettingsEditError as error:
            raise HTTPException(422, f"filters not changed: {error}") from error
        except CryowarpInputError as error:
            raise HTTPException(409, str(error)) from error
        return {"filters": filters.model_dump(mode="json"), "version": _fresh().version}

    def _fresh() -> IndexSnapshot:
        return index.refresh(force=True)

    @app.put("/api/items/{name}/selection")
    def put_selection(name: str, body: SelectionBody = Body()) -> dict[str, Any]:  # noqa: B008
        _check_name(name)
        if snapshot().row(name) is None:
            raise HTTPException(404, f"no item named {name!r} in this project")
        try:
            set_selection(index.folder, name, body.selection)
        except SettingsEditError as error:
            raise HTTPException(422, str(error)) from error
        except CryowarpInputError as error:
            raise HTTPException(409, str(error)) from error
        document = item_document(_fresh(), name)
        return {key: document[key] for key in ("name", "selection", "accepted", "reasons")}

    @app.get("/api/items/{name}")
    def item(name: str) -> dict[str, Any]:
        _check_name(name)
        try:
            return item_document(snapshot(), name)
        except ItemNotFound as error:
            raise HTTPException(404, str(error)) from error

    @app.get("/api/items/{name}/spectrum")
    def spectrum(name: str) -> dict[str, Any]:
        _check_name(name)
        try:
            return spectrum_document(snapshot(), name)
        except ItemNotFound as error:
            raise HTTPException(404, str(error)) from error

    @app.get("/api/items/{name}/picks")
    def picks(
        name: str, threshold: float | None = Query(default=None, gt=0.0, lt=1.0)
    ) -> dict[str, Any]:
        _check_name(name)
        try:
            return picks_document(snapshot(), name, threshold)
        except ItemNotFound as error:
            raise HTTPException(404, str(error)) from error

    @app.get("/api/items/{name}/image/{kind}")
    def image(name: str, kind: str) -> Response:
        _check_name(name)
        if kind not in IMAGE_KINDS:
            raise HTTPException(400, f"no image kind {kind!r} (one of {', '.join(IMAGE_KINDS)})")
        try:
            path = image_file(snapshot(), name, kind)
            if kind == "average":
                return Response(averages.get(path), media_type="image/png", headers=_NO_STORE)
        except (ItemNotFound, OSError) as error:
            raise HTTPException(404, str(error)) from error
        return FileResponse(path, media_type="image/png", headers=_NO_STORE)

    return app

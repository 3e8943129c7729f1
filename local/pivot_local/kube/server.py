"""The HTTP face of the emulator: the Kubernetes REST paths over aiohttp."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import errors, openapi
from .audit import AuditRecord, RequestAudit, client_of, rbac_verb
from .errors import ApiError
from .patch import PatchError, PatchFormatError, json_patch, merge_patch, strategic_merge_patch
from .resources import ALL_VERBS, ResourceType
from .selectors import SelectorError, parse_field_selector, parse_label_selector
from .store import DeleteOptions, Obj, Store
from .tables import to_table

log = logging.getLogger(__name__)

JSON = "application/json"
DEFAULT_WATCH_TIMEOUT = 1800.0  # the server's --min-request-timeout


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dump(obj), status=status, content_type=JSON)


def _error_response(err: ApiError) -> web.Response:
    return _json_response(err.status(), err.code)


def _truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true", "")


class ApiServer:
    """Routes requests to the store. One instance per emulator."""

    def __init__(self, store: Store, bookmark_interval: float = 10.0) -> None:
        self.store = store
        # (namespace, pod, container) -> the log file a kubelet writes, for pods/log.
        self.log_source: Callable[[str, str, str], Path | None] | None = None
        self.bookmark_interval = bookmark_interval
        self.address = "127.0.0.1:0"
        # (client, verb, group, resource, subresource, namespace) of every resource request.
        self.audit = RequestAudit()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def stop_watches(self) -> None:
        self.store.close_all_watchers()

    # ---- dispatch -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as e:
            return _error_response(e)
        except (SelectorError, PatchFormatError) as e:
            return _error_response(errors.bad_request(str(e)))
        except PatchError as e:
            return _error_response(ApiError(422, "Invalid", str(e)))
        except ValueError as e:  # e.g. a non-numeric limit or gracePeriodSeconds
            return _error_response(errors.bad_request(str(e)))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            # Clients expect a Status object even for the server's own bugs.
            log.exception("unhandled error on %s %s", request.method, request.path_qs)
            return _error_response(ApiError(500, "InternalError", f"internal error: {e!r}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json_response({"paths": ["/api", "/api/v1", "/apis", "/version"]})
        head = parts[0]
        if head in ("healthz", "readyz", "livez"):
            return web.Response(text="ok")
        if head == "version":
            return _json_response({
                "major": "1", "minor": "37", "gitVersion": "v1.37.0-pivot-local",
                "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"})
        if head == "openapi" and len(parts) >= 2 and parts[1] == "v3":
            types = list(self.store.types.values())
            if len(parts) == 2:
                return _json_response(openapi.index(types))
            gv_path = "/".join(parts[2:])
            if gv_path not in openapi.index(types)["paths"]:
                raise self._path_not_found(request)
            group, version = openapi.split_gv_path(gv_path)
            members = [t for t in types if t.group == group and version in t.versions]
            return _json_response(openapi.gv_document(members, group, version))
        if head == "api":
            if len(parts) == 1:
                return _json_response({
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]})
            if parts[1] != "v1":
                raise self._path_not_found(request)
            if len(parts) == 2:
                return _json_response(self._resource_list("", "v1"))
            return await self._resource(request, "", "v1", parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return _json_response(self._group_list())
            group = parts[1]
            if len(parts) == 2:
                g = next((g for g in self._group_list()["groups"] if g["name"] == group), None)
                if g is None:
                    raise self._path_not_found(request)
                return _json_response({"kind": "APIGroup", "apiVersion": "v1", **g})
            version = parts[2]
            if not self._versions_of(group).__contains__(version):
                raise self._path_not_found(request)
            if len(parts) == 3:
                return _json_response(self._resource_list(group, version))
            return await self._resource(request, group, version, parts[3:])
        raise self._path_not_found(request)

    def _path_not_found(self, request: web.Request) -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource",
                        {"causes": [{"reason": "UnexpectedServerResponse",
                                     "message": "404 page not found"}]})

    # ---- discovery ------------------------------------------------------------------------

    def _versions_of(self, group: str) -> list[str]:
        out: list[str] = []
        for rt in self.store.types.values():
            if rt.group == group:
                out.extend(v for v in rt.versions if v not in out)
        return out

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for rt in self.store.types.values():
            if rt.group:
                vs = groups.setdefault(rt.group, [])
                vs.extend(v for v in rt.versions if v not in vs)
        items = []
        for name, versions in groups.items():
            gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
            items.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for rt in self.store.types.values():
            if rt.group != group or version not in rt.versions:
                continue
            entry: dict[str, Any] = {
                "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": ALL_VERBS}
            if rt.short_names:
                entry["shortNames"] = rt.short_names
            if rt.categories:
                entry["categories"] = rt.categories
            resources.append(entry)
            if rt.has_status:
                resources.append({"name": f"{rt.plural}/status", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": rt.kind,
                                  "verbs": ["get", "patch", "update"]})
            for sub, verbs in rt.extra_subresources.items():
                resources.append({"name": f"{rt.plural}/{sub}", "singularName": "",
                                  "namespaced": rt.namespaced,
                                  "kind": "Binding" if sub == "binding" else rt.kind,
                                  "verbs": verbs})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}

    # ---- resources ------------------------------------------------------------------------

    async def _resource(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            cand = self.store.types.get((group, rest[2]))
            if cand is not None and cand.namespaced:
                ns, rest = rest[1], rest[2:]
        rt = self.store.find_type(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise self._path_not_found(request)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt.namespaced and ns is None and name is not None:
            raise self._path_not_found(request)
        if sub is not None and not (sub == "status" and rt.has_status) \
                and sub not in rt.extra_subresources:
            raise self._path_not_found(request)
        method = request.method
        q = request.query
        self.audit.record(AuditRecord(
            client=client_of(request.headers.get("User-Agent")),
            verb=rbac_verb(method, name is not None, _truthy(q.get("watch")) and "watch" in q),
            group=group, resource=rt.plural, subresource=sub or "", namespace=ns or ""))
        allowed = {None: ("GET", "POST", "PUT", "PATCH", "DELETE"),
                   "status": ("GET", "PUT", "PATCH"), "binding": ("POST",), "log": ("GET",)}
        if method not in allowed.get(sub, ()):
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource")
        if method == "GET":
            if name is None:
                if _truthy(q.get("watch")) and "watch" in q:
                    return await self._watch(request, rt, version, ns)
                return self._list(request, rt, version, ns)
            obj = self.store.get(rt, ns, name)
            if sub == "log":
                return await self._log(request, rt, obj)
            return self._object_response(request, rt, version, obj)
        if method == "POST":
            body = await self._body(request)
            if sub == "binding" and name is not None:
                return self._bind(rt, ns, name, body)
            if name is not None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method "
                               "on the requested resource")
            if rt.namespaced and ns is None:
                raise self._path_not_found(request)
            warnings: list[str] = []
            obj = self.store.create(rt, ns, body, dry_run="dryRun" in q,
                                    field_validation=q.get("fieldValidation", "Warn"),
                                    warnings=warnings)
            return self._object_response(request, rt, version, obj, 201, warnings)
        if method == "PUT" and name is not None:
            body = await self._body(request)
            warnings = []
            obj = self.store.update(rt, ns, name, body, sub, require_rv=rt.is_custom,
                                    dry_run="dryRun" in q,
                                    field_validation=q.get("fieldValidation", "Warn"),
                                    warnings=warnings)
            return self._object_response(request, rt, version, obj, 200, warnings)
        if method == "PATCH" and name is not None:
            return await self._patch(request, rt, version, ns, name, sub)
        if method == "DELETE":
            opts = await self._delete_options(request)
            if name is None:
                items = self.store.list_objects(
                    rt, ns, parse_label_selector(q.get("labelSelector")),
                    parse_field_selector(q.get("fieldSelector")))
                for o in items:
                    m = o["metadata"]
                    with contextlib.suppress(ApiError):
                        self.store.delete(rt, m.get("namespace"), m["name"], opts)
                return self._list_response(request, rt, version, items)
            obj = self.store.delete(rt, ns, name, opts)
            still_there = (ns or "", name) in self.store.objects[rt.key]
            if rt.returns_deleted or still_there:
                return self._object_response(request, rt, version, obj)
            return _json_response({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": rt.group, "kind": rt.plural,
                            "uid": obj["metadata"]["uid"]}})
        raise ApiError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource")

    async def _body(self, request: web.Request) -> Any:
        body = await self._raw_body(request)
        if request.method in ("POST", "PUT") and not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return body

    async def _raw_body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        if "protobuf" in (request.content_type or "") or "cbor" in (request.content_type or ""):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media "
                           "types include: application/json, application/yaml")
        try:
            if "yaml" in (request.content_type or ""):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding request body: {e}") from e

    def _as_version(self, rt: ResourceType, version: str, obj: Obj) -> Obj:
        # One store serves every version of a CRD; only apiVersion differs on the wire.
        want = rt.api_version(version)
        if obj.get("apiVersion") == want:
            return obj
        return {**obj, "apiVersion": want}

    def _wants_table(self, request: web.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _object_response(self, request: web.Request, rt: ResourceType, version: str, obj: Obj,
                         status: int = 200, warnings: list[str] | None = None) -> web.Response:
        obj = self._as_version(rt, version, obj)
        if self._wants_table(request):
            obj = to_table(rt, [obj], request.query.get("includeObject", "Metadata"),
                           {"resourceVersion": obj["metadata"].get("resourceVersion", "")})
        resp = _json_response(obj, status)
        for w in warnings or []:
            # Warnings travel as HTTP Warning headers (code 299), as the real server sends them.
            resp.headers.add("Warning", '299 - "' + w.replace('"', '\\"') + '"')
        return resp

    def _list(self, request: web.Request, rt: ResourceType, version: str,
              ns: str | None) -> web.Response:
        q = request.query
        items = self.store.list_objects(rt, ns, parse_label_selector(q.get("labelSelector")),
                                parse_field_selector(q.get("fieldSelector")))
        return self._list_response(request, rt, version, items)

    def _list_response(self, request: web.Request, rt: ResourceType, version: str,
                       items: list[Obj]) -> web.Response:
        q = request.query
        rv = str(self.store.rv)
        meta: dict[str, Any] = {"resourceVersion": rv}
        cont = q.get("continue")
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                after, rv = tuple(token["after"]), token["rv"]
            except (ValueError, KeyError, TypeError) as e:
                raise errors.bad_request("invalid continue token") from e
            if int(rv) < self.store.compacted[rt.key]:
                raise errors.gone("The provided continue parameter is too old to display a "
                                  "consistent list result.")
            meta["resourceVersion"] = rv
            items = [o for o in items if _sort_key(o) > after]
        limit = int(q.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            token = {"after": list(_sort_key(items[-1])), "rv": meta["resourceVersion"]}
            meta["continue"] = base64.urlsafe_b64encode(_dump(token)).decode()
        items = [self._as_version(rt, version, o) for o in items]
        if self._wants_table(request):
            return _json_response(
                to_table(rt, items, q.get("includeObject", "Metadata"), meta))
        return _json_response({"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                               "metadata": meta, "items": items})

    async def _patch(self, request: web.Request, rt: ResourceType, version: str,
                     ns: str | None, name: str, sub: str | None) -> web.Response:
        ctype = (request.content_type or "").lower()
        body = await self._body(request)
        q = request.query
        if ctype == "application/apply-patch+yaml":
            # Server-side apply, approximated: create if missing, else merge the intent.
            try:
                current = self.store.get(rt, ns, name)
            except ApiError as e:
                if e.code != 404 or sub:
                    raise
                if not isinstance(body, dict):
                    raise errors.bad_request("an apply patch must be an object") from e
                body.setdefault("metadata", {})["name"] = name
                obj = self.store.create(rt, ns, body, dry_run="dryRun" in q,
                                        field_validation=q.get("fieldValidation", "Strict"))
                return self._object_response(request, rt, version, obj, 201)
            patched = merge_patch(current, body)
        else:
            current = self.store.get(rt, ns, name)
            if ctype == "application/json-patch+json":
                patched = json_patch(current, body)
            elif ctype == "application/merge-patch+json":
                patched = merge_patch(current, body)
            elif ctype == "application/strategic-merge-patch+json":
                if rt.is_custom:
                    raise ApiError(415, "UnsupportedMediaType",
                                   'the body of the request was in an unknown format - accepted '
                                   'media types include: application/json-patch+json, '
                                   'application/merge-patch+json, application/apply-patch+yaml')
                patched = strategic_merge_patch(current, body)
            else:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - "
                               f"{ctype or 'none'}")
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch must produce an object")
        warnings: list[str] = []
        obj = self.store.update(rt, ns, name, patched, sub, dry_run="dryRun" in q,
                                field_validation=q.get("fieldValidation", "Warn"),
                                warnings=warnings)
        return self._object_response(request, rt, version, obj, 200, warnings)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        q = request.query
        body = await self._body(request) if request.can_read_body else {}
        body = body if isinstance(body, dict) else {}
        opts = DeleteOptions()
        grace = body.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        if grace is not None:
            opts.grace_period = int(grace)
        policy = body.get("propagationPolicy") or q.get("propagationPolicy")
        orphan = body.get("orphanDependents", q.get("orphanDependents"))
        if policy:
            opts.propagation = policy
        elif orphan in (True, "true"):
            opts.propagation = "Orphan"
        pre = body.get("preconditions") or {}
        opts.precondition_uid = pre.get("uid")
        opts.precondition_rv = pre.get("resourceVersion")
        opts.dry_run = bool(body.get("dryRun")) or "dryRun" in q
        return opts

    def _bind(self, rt: ResourceType, ns: str | None, name: str, body: Obj) -> web.Response:
        target = (body.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("Binding", "", name, [{
                "reason": "FieldValueRequired", "field": "target.name",
                "message": "Required value"}])
        self.store.bind(rt, ns, name, target)
        # The real server answers a bare Status (which the Python clients cannot parse as a
        # V1Binding; callers pass _preload_content=False).
        return _json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success"}, 201)

    async def _log(self, request: web.Request, rt: ResourceType, pod: Obj) -> web.StreamResponse:
        q = request.query
        meta = pod["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers", [])]
        container = q.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise errors.bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]")
        path = self.log_source(ns, name, container) if self.log_source else None
        data = await asyncio.to_thread(_read_from, path, 0) if path is not None else None
        if data is None or path is None:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to '
                                     "start: ContainerCreating")
        if q.get("tailLines"):
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(q["tailLines"]):]) if int(q["tailLines"]) else b""
        if q.get("limitBytes"):
            data = data[: int(q["limitBytes"])]
        if not _truthy(q.get("follow")) or "follow" not in q:
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(data)
        offset = len(data)
        if q.get("tailLines") or q.get("limitBytes"):
            whole = await asyncio.to_thread(_read_from, path, 0)
            offset = len(whole or b"")
        # Follow until the pod is gone or has ended and the file stops growing.
        with contextlib.suppress(ConnectionResetError):
            while True:
                await asyncio.sleep(0.2)
                more = await asyncio.to_thread(_read_from, path, offset)
                if more:
                    await resp.write(more)
                    offset += len(more)
                    continue
                current = self.store.objects[rt.key].get((ns, name))
                phase = ((current or {}).get("status") or {}).get("phase")
                if current is None or current["metadata"]["uid"] != meta["uid"] \
                        or phase in ("Succeeded", "Failed"):
                    break
            await resp.write_eof()
        return resp

    # ---- watch ----------------------------------------------------------------------------

    async def _watch(self, request: web.Request, rt: ResourceType, version: str,
                     ns: str | None) -> web.StreamResponse:
        q = request.query
        label = parse_label_selector(q.get("labelSelector"))
        fld = parse_field_selector(q.get("fieldSelector"))
        rv_param = q.get("resourceVersion")
        # WatchList (client-go's default now): initial state, then an initial-events-end bookmark.
        send_initial = _truthy(q.get("sendInitialEvents")) and "sendInitialEvents" in q
        since = None if rv_param in (None, "", "0") or send_initial else _int_rv(rv_param)
        bookmarks = _truthy(q.get("allowWatchBookmarks")) and "allowWatchBookmarks" in q
        timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        table = self._wants_table(request)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        try:
            watcher = self.store.watch(rt, ns, label, fld, since)
        except ApiError as e:
            await resp.prepare(request)
            await resp.write(_dump({"type": "ERROR", "object": e.status()}) + b"\n")
            return resp
        await resp.prepare(request)
        deadline = time.monotonic() + timeout
        initial = len(watcher.queue) if send_initial else 0
        initial_rv = str(self.store.rv)

        async def send(kind: str, obj: Obj) -> None:
            obj = self._as_version(rt, version, obj)
            if table:
                obj = to_table(rt, [obj], q.get("includeObject", "Metadata"),
                               {"resourceVersion": obj["metadata"]["resourceVersion"]})
            await resp.write(_dump({"type": kind, "object": obj}) + b"\n")

        try:
            if send_initial:
                for _ in range(initial):
                    await send(*watcher.queue.popleft())
                await resp.write(self._bookmark(rt, version, initial_rv, initial_end=True))
            while True:
                watcher.wakeup.clear()
                while watcher.queue:
                    await send(*watcher.queue.popleft())
                if watcher.closed:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(watcher.wakeup.wait(),
                                           min(left, self.bookmark_interval))
                except TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        await resp.write(self._bookmark(rt, version, str(self.store.rv)))
        except ConnectionResetError:
            return resp
        finally:
            self.store.unwatch(rt.key, watcher)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp


    def _bookmark(self, rt: ResourceType, version: str, rv: str,
                  initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": rv}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _dump({"type": "BOOKMARK", "object": {
            "kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": meta}}) + b"\n"


def _read_from(path: Path, offset: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return None


def _sort_key(o: Obj) -> tuple[str, str]:
    return (o["metadata"].get("namespace", ""), o["metadata"]["name"])


def _int_rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError as e:
        raise errors.bad_request(f"invalid resource version: {rv}") from e


def load_manifests(paths: list[Path]) -> list[Obj]:
    out: list[Obj] = []
    for p in paths:
        out.extend(d for d in yaml.safe_load_all(Path(p).read_text()) if d)
    return out

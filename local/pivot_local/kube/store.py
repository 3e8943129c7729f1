"""In-memory object store with the API server's write semantics and a bounded watch cache,
optionally kept on disk by a Journal (persist.py).

Stored objects are never mutated after they are stored: every write builds a new dict, so
list results, watch events and the history ring can share references without copying.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import ApiError
from .meta import meta_causes
from .persist import Journal
from .resources import ResourceType, builtin_types, types_from_crd
from .validation import crd_schema_causes

Obj = dict[str, Any]
Pred = Callable[[Obj], bool]
Key = tuple[str, str]  # (namespace or "", name)

_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WatchEvent:
    rv: int
    type: str
    obj: Obj
    old: Obj | None  # previous state, to turn selector transitions into ADDED/DELETED


@dataclass(eq=False)
class Watcher:
    namespace: str | None
    label: Pred
    fields: Pred
    max_queue: int
    queue: deque[tuple[str, Obj]] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False  # set when the type goes away, the server stops, or it lags too far

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.label(obj) and self.fields(obj)

    def offer(self, ev: WatchEvent) -> None:
        if self.closed:
            return
        now_in, was_in = self.matches(ev.obj), self.matches(ev.old)
        if ev.type == "MODIFIED" and now_in and not was_in:
            kind = "ADDED"
        elif ev.type == "MODIFIED" and was_in and not now_in:
            kind = "DELETED"
        elif now_in or (ev.type == "DELETED" and was_in):
            kind = ev.type
        else:
            return
        if len(self.queue) >= self.max_queue:
            # A client this far behind is cut off (it relists), as a real server does.
            self.close()
            return
        self.queue.append((kind, ev.obj))
        self.wakeup.set()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str = "Background"
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


class Store:
    """All objects, keyed by (group, plural) then (namespace, name)."""

    def __init__(
        self,
        history_limit: int = 1000,
        watch_queue_limit: int = 10000,
        journal: Journal | None = None,
    ) -> None:
        self.history_limit = history_limit
        self.watch_queue_limit = watch_queue_limit
        self.rv = 0
        self.types: dict[tuple[str, str], ResourceType] = {}
        self.objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self.history: dict[tuple[str, str], deque[WatchEvent]] = {}
        # Events at or below this RV are no longer in the ring: resuming from there is 410.
        self.compacted: dict[tuple[str, str], int] = {}
        self.watchers: dict[tuple[str, str], set[Watcher]] = {}
        # Indexes kept beside `objects` (by _put/_drop) so that label-selected lists, owner
        # lookups for garbage collection and namespace sweeps do not scan every object.
        self._by_label: dict[tuple[str, str], dict[tuple[str, str], set[Key]]] = {}
        self._by_ns: dict[tuple[str, str], dict[str, set[Key]]] = {}
        self._by_owner: dict[str, set[tuple[tuple[str, str], Key]]] = {}
        self._uids: set[str] = set()
        self.start_time = dt.datetime.now(dt.UTC)
        # Set once the saved state is loaded: every _put/_drop is then noted in it.
        self.journal: Journal | None = None
        self._rv_ceiling = float("inf")  # RVs above it need a durable reservation first
        for rt in builtin_types():
            self.register(rt)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.types[("", "namespaces")], None, {"metadata": {"name": ns}})
        if journal is not None:
            self._attach(journal)

    def _attach(self, journal: Journal) -> None:
        saved, rv = journal.load()
        if saved is not None:
            self.restore(saved, rv)
        self.rv = max(self.rv, rv)
        self._rv_ceiling = self.rv
        self.journal = journal
        if saved is None:  # a new directory: the built-in namespaces are its first state
            for rt_key, objs in self.objects.items():
                for key, obj in objs.items():
                    journal.record(rt_key, key, obj)

    def restore(self, saved: list[tuple[tuple[str, str], Obj]], rv: int) -> None:
        """Replace every object with saved ones (uids, timestamps and RVs as they were) and
        continue RVs from `rv`. Watch history starts empty: older resumes get 410 Gone."""
        for rt_key in list(self.objects):
            for key in list(self.objects[rt_key]):
                self._drop(rt_key, key)
        crd_key = ("apiextensions.k8s.io", "customresourcedefinitions")
        for rt_key, obj in saved:
            if rt_key == crd_key:
                self.register(types_from_crd(obj))
        for rt_key, obj in saved:
            if rt_key in self.types:
                meta = obj["metadata"]
                self._put(rt_key, (meta.get("namespace") or "", meta["name"]), obj)
        self.rv = max(self.rv, rv)
        for rt_key, ring in self.history.items():
            ring.clear()
            self.compacted[rt_key] = self.rv

    # ---- type registry ---------------------------------------------------------------

    def register(self, rt: ResourceType) -> None:
        old = self.types.get(rt.key)
        self.types[rt.key] = rt
        if old is None:
            self.objects[rt.key] = {}
            self._by_label[rt.key] = {}
            self._by_ns[rt.key] = {}
            self.history[rt.key] = deque(maxlen=self.history_limit)
            self.compacted[rt.key] = self.rv
            self.watchers[rt.key] = set()

    def unregister(self, key: tuple[str, str]) -> None:
        for w in self.watchers.pop(key, set()):
            w.close()
        self.types.pop(key, None)
        for okey in list(self.objects.get(key, ())):
            self._drop(key, okey)
        self.objects.pop(key, None)
        self._by_label.pop(key, None)
        self._by_ns.pop(key, None)
        self.history.pop(key, None)
        self.compacted.pop(key, None)

    def find_type(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.types.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def index_entries(self) -> int:
        """Keys held by the label, namespace, owner and uid indexes (they must shrink back when
        objects go, or memory grows with every label value ever written)."""
        return (
            sum(len(ix) for ix in self._by_label.values())
            + sum(len(ix) for ix in self._by_ns.values())
            + len(self._by_owner)
            + len(self._uids)
        )

    def history_len(self, group: str, plural: str) -> int:
        return len(self.history.get((group, plural), ()))

    # ---- reads ---------------------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str | None, name: str) -> Obj:
        obj = self.objects[rt.key].get((ns or "", name))
        if obj is None:
            raise errors.not_found(rt.qualified, name, rt.group, rt.plural)
        return obj

    def list_objects(self, rt: ResourceType, ns: str | None, label: Pred, fld: Pred) -> list[Obj]:
        objs = self.objects[rt.key]
        keys: set[Key] | None = None
        for pair in getattr(label, "equals", ()):
            found = self._by_label[rt.key].get(pair, set())
            keys = found if keys is None else keys & found
        if keys is None and ns is not None:
            keys = self._by_ns[rt.key].get(ns, set())
        candidates = objs.items() if keys is None else ((k, objs[k]) for k in keys)
        items = [
            o for (ons, _), o in candidates if (ns is None or ons == ns) and label(o) and fld(o)
        ]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    # ---- watch ----------------------------------------------------------------------------

    def watch(
        self, rt: ResourceType, ns: str | None, label: Pred, fld: Pred, since: int | None
    ) -> Watcher:
        """A watcher primed with current state (since=None) or the events after `since`."""
        w = Watcher(ns, label, fld, self.watch_queue_limit)
        if since is None:
            for obj in self.list_objects(rt, ns, label, fld):
                w.queue.append(("ADDED", obj))
        else:
            if since < self.compacted[rt.key]:
                raise errors.gone(
                    f"too old resource version: {since} ({self.compacted[rt.key] + 1})"
                )
            for ev in self.history[rt.key]:
                if ev.rv > since:
                    w.offer(ev)
        if w.queue:
            w.wakeup.set()
        self.watchers[rt.key].add(w)
        return w

    def unwatch(self, rt_key: tuple[str, str], w: Watcher) -> None:
        self.watchers.get(rt_key, set()).discard(w)

    def _emit(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> None:
        ev = WatchEvent(int(obj["metadata"]["resourceVersion"]), kind, obj, old)
        ring = self.history[rt.key]
        if len(ring) == ring.maxlen:
            self.compacted[rt.key] = ring[0].rv
        ring.append(ev)
        for w in list(self.watchers[rt.key]):
            w.offer(ev)

    def _next_rv(self) -> str:
        self.rv += 1
        if self.rv > self._rv_ceiling and self.journal is not None:
            self._rv_ceiling = self.journal.reserve(self.rv)
        return str(self.rv)

    # ---- writes ---------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        ns: str | None,
        body: Obj,
        dry_run: bool = False,
        field_validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
            nsobj = self.objects[("", "namespaces")].get(("", ns or ""))
            if nsobj is None:
                raise errors.not_found("namespaces", ns or "", "", "namespaces")
            if nsobj["metadata"].get("deletionTimestamp") and not dry_run:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{rt.plural} "{meta.get("name") or ""}" is '
                    f"forbidden: unable to create new content in namespace {ns} "
                    "because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    random.choice(_GEN_CHARS) for _ in range(5)
                )
            else:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "field": "metadata.name",
                            "message": "Required value: name or generateName is required",
                        }
                    ],
                )
        name = meta["name"]
        causes = meta_causes(rt.key, meta)
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)
        if (ns or "", name) in self.objects[rt.key]:
            raise errors.already_exists(rt.qualified, name, rt.group, rt.plural)
        version = _version_of(obj, rt)
        obj["apiVersion"] = rt.api_version(version)
        obj["kind"] = rt.kind
        for k in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "managedFields",
        ):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        if _has_generation(rt):
            meta["generation"] = 1
        if rt.is_custom and rt.has_status:
            obj.pop("status", None)
        self._defaults_on_create(rt, obj)
        obj = self._validate(rt, version, obj, name, field_validation, warnings)
        if dry_run:
            return obj
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        self._put(rt.key, (ns or "", name), obj)
        self._emit(rt, "ADDED", obj, None)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd_established(obj)
        return self.objects[rt.key].get((ns or "", name), obj)

    def update(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        new: Obj,
        subresource: str | None = None,
        require_rv: bool = False,
        dry_run: bool = False,
        field_validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        """PUT (and the tail of PATCH): optimistic concurrency, status isolation, generation."""
        old = self.get(rt, ns, name)
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise errors.bad_request("the body must be an object")
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        rv = meta.get("resourceVersion")
        if rv in (None, ""):
            if require_rv:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "metadata.resourceVersion",
                            "message": "Invalid value: 0x0: must be specified for an update",
                        }
                    ],
                )
        elif str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.qualified, name, rt.group, rt.plural)
        if subresource == "status":
            # /status writes change status only; everything else is kept from the old object.
            merged = dict(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = copy.deepcopy(merged)
        else:
            if rt.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            old_meta = old["metadata"]
            meta = new["metadata"]
            for k in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
            meta.pop("managedFields", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise errors.invalid(
                        rt.kind,
                        rt.group,
                        name,
                        [
                            {
                                "reason": "FieldValueForbidden",
                                "field": "metadata.finalizers",
                                "message": "Forbidden: no new finalizers can be added if "
                                "the object is being deleted",
                            }
                        ],
                    )
        if rt.key == ("", "pods") and subresource is None:
            _check_pod_spec_update(old, new)
        causes = meta_causes(rt.key, new["metadata"])
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and subresource is None:
            self._check_crd_schema(rt, new)
        new["apiVersion"] = old["apiVersion"] if "apiVersion" not in new else new["apiVersion"]
        version = _version_of(new, rt)
        new["apiVersion"] = rt.api_version(version)
        new["kind"] = rt.kind
        self._fixups(rt, new)
        new = self._validate(rt, version, new, name, field_validation, warnings)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if _has_generation(rt) and _content(new) != _content(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if new == old:
            return old  # a no-op write changes nothing and emits no event, as on a real server
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        if (
            new["metadata"].get("deletionTimestamp")
            and not new["metadata"].get("finalizers")
            and not _awaiting_kubelet(rt, new)
        ):
            return self._remove(rt, new)
        self._put(rt.key, (ns or "", name), new)
        self._emit(rt, "MODIFIED", new, old)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and subresource is None:
            self.on_crd_update(new)
        return new

    def bind(self, rt: ResourceType, ns: str | None, name: str, node: str) -> Obj:
        """pods/binding: set spec.nodeName and the PodScheduled condition in one write."""
        pod = self.get(rt, ns, name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on pods/binding "
                f'"{name}": pod {name} is already assigned to node '
                f'"{pod["spec"]["nodeName"]}"',
            )
        if pod["metadata"].get("deletionTimestamp"):
            raise ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on pods/binding "
                f'"{name}": pod {name} is being deleted, cannot be assigned to a host',
            )
        new = copy.deepcopy(pod)
        new.setdefault("spec", {})["nodeName"] = node
        status = new.setdefault("status", {})
        conds = [c for c in status.get("conditions", []) if c.get("type") != "PodScheduled"]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now_iso(),
            }
        )
        status["conditions"] = conds
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._put(rt.key, (ns or "", name), new)
        self._emit(rt, "MODIFIED", new, pod)
        return new

    def delete(self, rt: ResourceType, ns: str | None, name: str, opts: DeleteOptions) -> Obj:
        """Returns the object as it is after the call (still present or already removed)."""
        obj = self.get(rt, ns, name)
        meta = obj["metadata"]
        if opts.precondition_uid and opts.precondition_uid != meta["uid"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{name}": '
                f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                f"UID in object meta: {meta['uid']}",
            )
        if opts.precondition_rv and opts.precondition_rv != meta["resourceVersion"]:
            raise errors.conflict(rt.qualified, name, rt.group, rt.plural)
        if opts.dry_run:
            return obj
        if opts.propagation == "Orphan":
            self._orphan_dependents(meta["uid"])
        grace = self._grace_period(rt, obj, opts)
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if grace == 0 and not finalizers:
                return self._remove(rt, obj)
            if grace is not None and grace < int(meta.get("deletionGracePeriodSeconds") or 0):
                new = copy.deepcopy(obj)
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                new["metadata"]["resourceVersion"] = self._next_rv()
                self._put(rt.key, (ns or "", name), new)
                self._emit(rt, "MODIFIED", new, obj)
                return new
            return obj
        is_ns = rt.key == ("", "namespaces")
        if not finalizers and not grace and not is_ns:
            return self._remove(rt, obj)
        new = copy.deepcopy(obj)
        nm = new["metadata"]
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace or 0)
        nm["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        nm["deletionGracePeriodSeconds"] = grace or 0
        if _has_generation(rt):
            nm["generation"] = int(nm.get("generation", 1)) + 1
        nm["resourceVersion"] = self._next_rv()
        if is_ns:
            new.setdefault("status", {})["phase"] = "Terminating"
        self._put(rt.key, (ns or "", name), new)
        self._emit(rt, "MODIFIED", new, obj)
        if is_ns:
            # The namespace goes once its contents are gone (which finalizers may hold up).
            self._empty_namespace(name)
        return self.objects[rt.key].get((ns or "", name), new)

    # ---- internals ------------------------------------------------------------------------

    def _grace_period(self, rt: ResourceType, obj: Obj, opts: DeleteOptions) -> int | None:
        if rt.key == ("", "namespaces"):
            return 0 if opts.grace_period is None else opts.grace_period
        if rt.key != ("", "pods"):
            return 0
        # Pods a kubelet never got (or that already ended) go at once, as on a real server.
        phase = (obj.get("status") or {}).get("phase")
        if not (obj.get("spec") or {}).get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if opts.grace_period is not None:
            return max(0, opts.grace_period)
        spec_grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds")
        return 30 if spec_grace is None else int(spec_grace)

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        old = self._drop(rt.key, key)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(rt, "DELETED", final, old)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd_removed(final)
        self._collect_dependents(meta["uid"])
        ns = meta.get("namespace")
        if ns:
            self._maybe_finish_namespace(ns)
        return final

    def _put(self, rt_key: tuple[str, str], key: Key, obj: Obj) -> None:
        objs = self.objects[rt_key]
        old = objs.get(key)
        if old is not None:
            self._unindex(rt_key, key, old)
        objs[key] = obj
        meta = obj["metadata"]
        by_label = self._by_label[rt_key]
        for pair in (meta.get("labels") or {}).items():
            by_label.setdefault(pair, set()).add(key)
        self._by_ns[rt_key].setdefault(key[0], set()).add(key)
        for ref in meta.get("ownerReferences") or []:
            self._by_owner.setdefault(str(ref.get("uid")), set()).add((rt_key, key))
        self._uids.add(meta["uid"])
        if self.journal is not None:
            self.journal.record(rt_key, key, obj)

    def _drop(self, rt_key: tuple[str, str], key: Key) -> Obj | None:
        old = self.objects[rt_key].pop(key, None)
        if old is not None:
            self._unindex(rt_key, key, old)
            if self.journal is not None:
                self.journal.record(rt_key, key, None)
        return old

    def _unindex(self, rt_key: tuple[str, str], key: Key, obj: Obj) -> None:
        meta = obj["metadata"]

        def discard(index: dict[Any, set[Any]], ikey: Any, member: Any) -> None:
            members = index.get(ikey)
            if members is not None:
                members.discard(member)
                if not members:  # empty sets would pile up with every label value ever seen
                    del index[ikey]

        for pair in (meta.get("labels") or {}).items():
            discard(self._by_label[rt_key], pair, key)
        discard(self._by_ns[rt_key], key[0], key)
        for ref in meta.get("ownerReferences") or []:
            discard(self._by_owner, str(ref.get("uid")), (rt_key, key))
        self._uids.discard(meta["uid"])

    def _dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        out = []
        for rt_key, key in sorted(self._by_owner.get(uid, ())):
            o = self.objects[rt_key].get(key)
            if o is not None:
                out.append((self.types[rt_key], o))
        return out

    def _collect_dependents(self, uid: str) -> None:
        # Background propagation: an object whose owners are all gone is deleted.
        for rt, o in self._dependents(uid):
            refs = o["metadata"].get("ownerReferences") or []
            if any(r.get("uid") != uid and self._uid_exists(r.get("uid")) for r in refs):
                continue
            m = o["metadata"]
            cur = self.objects[rt.key].get((m.get("namespace", ""), m["name"]))
            if cur is not None:
                self.delete(rt, m.get("namespace"), m["name"], DeleteOptions())

    def _orphan_dependents(self, uid: str) -> None:
        for rt, o in self._dependents(uid):
            new = copy.deepcopy(o)
            m = new["metadata"]
            m["ownerReferences"] = [r for r in m["ownerReferences"] if r.get("uid") != uid]
            if not m["ownerReferences"]:
                del m["ownerReferences"]
            m["resourceVersion"] = self._next_rv()
            self._put(rt.key, (m.get("namespace", ""), m["name"]), new)
            self._emit(rt, "MODIFIED", new, o)

    def _uid_exists(self, uid: str | None) -> bool:
        return uid in self._uids

    def _empty_namespace(self, ns: str) -> None:
        for key in list(self.objects):
            rt = self.types.get(key)
            if rt is None or not rt.namespaced:
                continue
            for okey in sorted(self._by_ns.get(key, {}).get(ns, ())):
                if okey in self.objects.get(key, {}):
                    self.delete(rt, ns, okey[1], DeleteOptions())
        self._maybe_finish_namespace(ns)

    def _maybe_finish_namespace(self, ns: str) -> None:
        nsobj = self.objects[("", "namespaces")].get(("", ns))
        if (
            nsobj is None
            or not nsobj["metadata"].get("deletionTimestamp")
            or nsobj["metadata"].get("finalizers")
        ):
            return
        if any(self._by_ns[key].get(ns) for key in self.objects if self.types[key].namespaced):
            return
        self._remove(self.types[("", "namespaces")], nsobj)

    def _validate(
        self,
        rt: ResourceType,
        version: str,
        obj: Obj,
        name: str,
        field_validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        validator = rt.validators.get(version)
        if validator is None:
            return obj
        if field_validation in ("Strict", "Warn"):
            unknown = validator.unknown(obj)
            if unknown and field_validation == "Strict":
                listed = ", ".join(f'unknown field "{u}"' for u in unknown)
                raise errors.bad_request(
                    f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                    f"strict decoding error: {listed}"
                )
            if warnings is not None:
                warnings.extend(f'unknown field "{u}"' for u in unknown)
        obj = validator.prune(obj)
        causes = validator.causes(obj)
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)
        return obj

    def _defaults_on_create(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == ("", "namespaces"):
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        elif rt.key == ("", "pods"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("schedulerName", "default-scheduler")
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if "clusterIP" not in spec:
                n = self.rv + 10
                spec["clusterIP"] = f"10.96.{(n >> 8) & 255}.{n & 255}"
                spec["clusterIPs"] = [spec["clusterIP"]]
            obj.setdefault("status", {"loadBalancer": {}})
        elif rt.key == ("", "secrets"):
            obj.setdefault("type", "Opaque")
        elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._check_crd_schema(rt, obj)
            try:
                types_from_crd(obj)
            except (KeyError, TypeError, IndexError) as e:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    obj["metadata"]["name"],
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec",
                            "message": f"Invalid value: incomplete CRD spec ({e})",
                        }
                    ],
                ) from e
        self._fixups(rt, obj)

    def _check_crd_schema(self, rt: ResourceType, crd: Obj) -> None:
        """Refuse a CRD whose schema the server would refuse (not structural, or CEL rules
        where CEL has no type), rather than serve it with rules it cannot hold."""
        causes = crd_schema_causes(crd)
        if causes:
            raise errors.invalid(rt.kind, rt.group, crd["metadata"]["name"], causes)

    def _fixups(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == ("", "secrets"):
            for k, v in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(str(v), validate=True)
                except ValueError as e:
                    # A real server fails to decode the body: raw strings belong in stringData.
                    raise errors.bad_request(
                        f'Secret in version "v1" cannot be handled as a Secret: illegal base64 '
                        f'data in data["{k}"]'
                    ) from e
        if rt.key == ("", "secrets") and "stringData" in obj:
            # The server folds the write-only stringData into data.
            data = obj.setdefault("data", {}) or {}
            for k, v in (obj.pop("stringData") or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data

    def _crd_established(self, crd: Obj) -> None:
        rt = types_from_crd(crd)
        self.register(rt)
        new = copy.deepcopy(crd)
        ts = now_iso()
        new["status"] = {
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": ts,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": ts,
                },
            ],
        }
        new["metadata"]["resourceVersion"] = self._next_rv()
        key = ("apiextensions.k8s.io", "customresourcedefinitions")
        self._put(key, ("", crd["metadata"]["name"]), new)
        self._emit(self.types[key], "MODIFIED", new, crd)

    def _crd_removed(self, crd: Obj) -> None:
        spec = crd["spec"]
        key = (spec["group"], spec["names"]["plural"])
        rt = self.types.get(key)
        if rt is None:
            return
        for obj in list(self.objects[key].values()):
            final = copy.deepcopy(obj)
            final["metadata"]["resourceVersion"] = self._next_rv()
            self._emit(rt, "DELETED", final, obj)
        self.unregister(key)

    def on_crd_update(self, crd: Obj) -> None:
        """Re-read a changed CRD (new versions, columns or schema) without losing objects."""
        self.register(types_from_crd(crd))

    def expire_events(self, ttl: float) -> int:
        """Remove Events older than `ttl` seconds, as the server's event TTL (1h) does."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ttl)
        stamp = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
        removed = 0
        for key in (("", "events"), ("events.k8s.io", "events")):
            rt = self.types.get(key)
            if rt is None:
                continue
            for obj in list(self.objects[key].values()):
                # ISO-8601 UTC stamps of one format compare correctly as strings.
                if obj["metadata"].get("creationTimestamp", "") < stamp:
                    self._remove(rt, obj)
                    removed += 1
        return removed

    def close_all_watchers(self) -> None:
        for ws in self.watchers.values():
            for w in ws:
                w.close()


def _version_of(obj: Obj, rt: ResourceType) -> str:
    api_version = obj.get("apiVersion") or ""
    version = api_version.rsplit("/", 1)[-1] if api_version else ""
    return version if version in rt.versions else rt.versions[0]


def _has_generation(rt: ResourceType) -> bool:
    # Kinds whose server strategy tracks metadata.generation (ConfigMaps, Secrets... do not).
    return rt.is_custom or rt.key in (
        ("", "pods"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    )


def _content(obj: Obj) -> Obj:
    # What a generation bump tracks: everything but metadata and status.
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _awaiting_kubelet(rt: ResourceType, obj: Obj) -> bool:
    # A gracefully deleted pod stays until the kubelet confirms with a zero-grace DELETE.
    return rt.key == ("", "pods") and bool(obj["metadata"].get("deletionGracePeriodSeconds"))


# What a pod update may change in spec; everything else is immutable after creation.
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _check_pod_spec_update(old: Obj, new: Obj) -> None:
    def frozen(spec: Any) -> Any:
        spec = {k: v for k, v in (spec or {}).items() if k not in _POD_MUTABLE}
        for key in ("containers", "initContainers"):
            if isinstance(spec.get(key), list):
                spec[key] = [
                    {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                    for c in spec[key]
                ]
        return spec

    if frozen(old.get("spec")) != frozen(new.get("spec")):
        name = old["metadata"]["name"]
        raise errors.invalid(
            "Pod",
            "",
            name,
            [
                {
                    "reason": "FieldValueForbidden",
                    "field": "spec",
                    "message": "Forbidden: pod updates may not change fields other than "
                    "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                    "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
                    "set to 1 if it was previously negative)",
                }
            ],
        )

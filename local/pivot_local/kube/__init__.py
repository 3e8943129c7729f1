"""An in-memory Kubernetes API server that kopf, kubernetes_asyncio and kubectl accept.

    emu = KubeEmulator(port=0, crds=[Path("crds/trainingsessions.pivot.dev.yaml")])
    await emu.start(); emu.write_kubeconfig(path); ...; await emu.stop()
    with run_emulator_in_thread(crds=[...]) as emu: ...      # sync code and tests
    python -m pivot_local.kube --port 6443 --crd crds/trainingsessions.pivot.dev.yaml

With `data_dir` its objects survive a restart (persist.py: snapshot + append log, fsynced
once a second; RVs continue, older watch resumes get 410 Gone).

It has no auth, so it listens on 127.0.0.1 by default. Memory stays bounded: a ring of
`history_limit` watch events per resource type (older resumes get 410 Expired), Events expire
after `event_ttl` seconds, and a watcher more than 10000 events behind is cut off.

Behaviour that matches a real server and surprises people:
- CustomObjectsApi sends a dict patch as a JSON patch unless given
  `_content_type="application/merge-patch+json"`; the answer is 400, as on a real cluster.
  Strategic merge patches on custom resources get 415.
- `create_namespaced_pod_binding` answers a Status that the Python clients cannot parse as
  V1Binding: call it with `_preload_content=False`.
- kopf cancels every task of the loop it runs in when it stops: run it on its own loop.

Not supported: protobuf/CBOR request bodies (kubectl's typed `create configmap|secret|...`
subcommands get 415; `kubectl apply -f` works), RBAC/admission, apps/batch groups, real
server-side apply field ownership (apply patches are merged and create when missing).
Every resource request is also recorded, reduced to what an RBAC rule matches, in
`emu.audit` (see audit.py): the clients are told apart by User-Agent.
`pods/log` is served from files a kubelet names through `KubeEmulator.set_log_source`.
"""

from .audit import AuditRecord, RequestAudit
from .emulator import KubeEmulator, run_emulator_in_thread

__all__ = ["AuditRecord", "KubeEmulator", "RequestAudit", "run_emulator_in_thread"]

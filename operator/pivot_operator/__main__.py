"""`python -m pivot_operator`: run the operator. With PIVOT_PEERING_NAME set, replicas elect one
active operator through kopf peering (the peering CRDs must be installed: crds/kopf-peering.yaml);
without it the operator runs standalone."""

from __future__ import annotations

import os

import kopf


def main() -> None:
    from pivot_operator import handlers  # registers the handlers

    # PIVOT_LOG_FORMAT=json: one JSON object per line (with the object's namespace/name) for
    # a cluster's log pipeline; plain text by default, for people.
    log_format = (
        kopf.LogFormat.JSON if os.environ.get("PIVOT_LOG_FORMAT") == "json" else kopf.LogFormat.FULL
    )
    kopf.configure(verbose=bool(os.environ.get("PIVOT_OPERATOR_DEBUG")), log_format=log_format)
    config = handlers.CONFIG
    kopf.run(
        standalone=not config.peering_name,
        peering_name=config.peering_name or None,
        priority=config.peering_priority,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
    )


if __name__ == "__main__":
    main()

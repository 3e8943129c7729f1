"""`python -m pivot_operator`: run the operator (standalone; leader election comes with peering)."""

from __future__ import annotations

import os

import kopf


def main() -> None:
    from pivot_operator import handlers  # registers the handlers

    kopf.configure(verbose=bool(os.environ.get("PIVOT_OPERATOR_DEBUG")))
    config = handlers.CONFIG
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=os.environ.get("PIVOT_LIVENESS_ENDPOINT") or None,
    )


if __name__ == "__main__":
    main()

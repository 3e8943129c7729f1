"""python -m pivot_local.kube --port 6443 --crd crds/trainingsessions.pivot.dev.yaml"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from .emulator import KubeEmulator


async def _serve(args: argparse.Namespace) -> None:
    emu = KubeEmulator(host=args.host, port=args.port, crds=args.crd,
                       history_limit=args.history_limit, data_dir=args.data_dir)
    await emu.start()
    if args.kubeconfig:
        emu.write_kubeconfig(args.kubeconfig)
    print(f"kube emulator listening on {emu.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emu.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m pivot_local.kube", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="no auth: keep it on loopback")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--crd", type=Path, action="append", default=[], help="CRD manifest to load")
    p.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the emulator here")
    p.add_argument("--data-dir", type=Path,
                   help="keep objects here across restarts (default: in memory only)")
    p.add_argument("--history-limit", type=int, default=1000,
                   help="watch events kept per resource type for resumes")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()

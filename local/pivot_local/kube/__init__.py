"""An in-memory Kubernetes API server that kopf, kubernetes_asyncio and kubectl accept."""

from .emulator import KubeEmulator, run_emulator_in_thread

__all__ = ["KubeEmulator", "run_emulator_in_thread"]

"""The process kubelet's small emulation of cluster networking for distributed sessions."""

from __future__ import annotations

from pivot_local.kubelet import localize_host, remap_master_port


def test_cluster_dns_names_resolve_to_loopback() -> None:
    assert localize_host("trainer-0.s-workers.default.svc.cluster.local") == "127.0.0.1"
    assert localize_host("redis.pivot.svc") == "127.0.0.1"
    assert localize_host("redis.pivot.svc:6379") == "127.0.0.1:6379"
    assert localize_host("--master-addr=trainer-0.s.ns.svc.cluster.local") == (
        "--master-addr=127.0.0.1"
    )


def test_other_values_are_left_alone() -> None:
    for value in ("example.com", "-m", "pivot_trainer", '{"epochs": 3}', "svc", "--nnodes=2"):
        assert localize_host(value) == value


def test_master_port_is_remapped_in_env_and_torchrun_flags() -> None:
    env = {"MASTER_PORT": "29500"}
    argv = remap_master_port(env, ["run", "--master-port=29500", "--nnodes=2"], 41234)
    assert env["MASTER_PORT"] == "41234"
    assert argv == ["run", "--master-port=41234", "--nnodes=2"]

"""Every part's kubernetes_asyncio client: no per-request environment lookups, the
environment's proxy read once (pivot_schema.kubeclient)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client

from pivot_schema.kubeclient import env_proxy, without_env_lookups

PROXY = "http://proxy.corp:3128"


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "kubernetes.default.svc,10.0.0.1")


@pytest.mark.usefixtures("proxied")
def test_the_environments_proxy_unless_no_proxy_names_the_host() -> None:
    assert env_proxy("https://k8s.example.com:6443") == PROXY
    assert env_proxy("https://kubernetes.default.svc:443") is None
    assert env_proxy("https://10.0.0.1") is None
    assert env_proxy("http://k8s.example.com") is None  # only HTTPS_PROXY is set
    assert env_proxy(None) is None


def test_no_proxy_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert env_proxy("https://k8s.example.com:6443") is None


@pytest.mark.usefixtures("proxied")
async def test_a_client_looks_nothing_up_per_request_and_keeps_the_proxy() -> None:
    configuration = client.Configuration(host="https://k8s.example.com:6443")
    plain = client.ApiClient(configuration)
    assert plain.rest_client.pool_manager.trust_env  # what kubernetes_asyncio does
    api = without_env_lookups(plain)
    try:
        assert api is plain
        assert api.rest_client.pool_manager.trust_env is False
        assert api.rest_client.proxy == PROXY
    finally:
        await api.close()
    # A proxy the configuration names is kept.
    configuration = client.Configuration(host="https://k8s.example.com:6443")
    configuration.proxy = "http://other:8080"
    api = without_env_lookups(client.ApiClient(configuration))
    try:
        assert api.rest_client.proxy == "http://other:8080"
    finally:
        await api.close()


async def test_the_api_and_the_operator_build_their_clients_so(tmp_path: Path) -> None:
    from pivot_api.kube import new_api_client
    from pivot_operator.kube import make_api_client

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    for make in (new_api_client, make_api_client):
        api = await make(str(kubeconfig))
        try:
            assert api.rest_client.pool_manager.trust_env is False, make
        finally:
            await api.close()

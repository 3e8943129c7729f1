"""The chart renders for the value sets users run, and every object is valid Kubernetes."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import (
    REPO_ROOT,
    Manifest,
    container_env,
    notes,
    of_kind,
    one,
    pod_specs,
    render,
)

# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest known.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis": {"redis": {"mode": "external", "external": {"url": "redis://r:6379/1"}}},
    "external-redis-secret": {
        "redis": {"mode": "external", "external": {"existingSecret": "my-redis"}}
    },
    "ingress": {
        "api": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "pivot.example.com",
                "tls": [{"secretName": "pivot-tls", "hosts": ["pivot.example.com"]}],
            }
        }
    },
    "ingress-any-host": {"api": {"ingress": {"enabled": True}}},
    "auth-off": {"api": {"auth": {"enabled": False}}},
    "existing-secrets-minio-monitoring": {
        "s3": {"endpoint": "http://minio.minio:9000", "existingSecret": "minio-creds"},
        "api": {"auth": {"existingSecret": "my-keys", "existingSecretKey": "keys"}},
        "sessionNamespace": "training",
        "operator": {"extraNamespaces": ["training-b"], "debug": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "networkPolicy": {"apiFrom": [{"namespaceSelector": {"matchLabels": {"ingress": "yes"}}}]},
    },
    "single-replicas-no-netpol": {
        "api": {"replicas": 1},
        "operator": {"replicas": 1},
        "networkPolicy": {"enabled": False},
    },
}


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in crds/."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def validate(doc: Manifest, services: list[Manifest]) -> None:
    """kubernetes-validate --strict for built-in kinds; CRD schemas for our own; a structural
    check for the one third-party kind the chart can render (ServiceMonitor)."""
    key = (doc["apiVersion"], doc["kind"])
    schemas = crd_schemas()
    if key in schemas:
        # openAPIV3Schema is OpenAPI 3.0: draft-4 semantics (boolean exclusiveMinimum).
        jsonschema.Draft4Validator(schemas[key]).validate(doc)
        return
    if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
        selector = doc["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in doc["spec"]["endpoints"]}
        matching = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert matching, "the ServiceMonitor selects no Service"
        assert ports <= {p["name"] for s in matching for p in s["spec"]["ports"]}
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid(name: str) -> None:
    docs = render(VALUE_SETS[name])
    assert docs
    services = of_kind(docs, "Service")
    for doc in docs:
        try:
            validate(doc, services)
        except Exception as exc:
            raise AssertionError(
                f"{name}: {doc['kind']}/{doc['metadata']['name']} is invalid: {exc}"
            ) from exc


def test_the_crds_are_valid_custom_resource_definitions() -> None:
    crds = sorted((REPO_ROOT / "helm" / "pivot" / "crds").glob("*.yaml"))
    assert crds
    for path in crds:
        for doc in yaml.safe_load_all(path.read_text()):
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def test_the_docs_example_session_matches_the_crd() -> None:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    sessions = [
        d for b in blocks for d in yaml.safe_load_all(b) if d and d.get("kind") == "TrainingSession"
    ]
    assert sessions, "docs/deploy.md shows a TrainingSession"
    for s in sessions:
        validate(s, [])


def test_defaults_install_everything_the_platform_needs() -> None:
    docs = render()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Deployment", "pivot-api"),
        ("Service", "pivot-api"),
        ("Deployment", "pivot-operator"),
        ("ServiceAccount", "pivot-api"),
        ("ServiceAccount", "pivot-operator"),
        ("StatefulSet", "pivot-redis"),
        ("Service", "pivot-redis"),
        ("ConfigMap", "pivot-configs"),
        ("Secret", "pivot-s3"),
        ("Secret", "pivot-api-keys"),
        ("PodDisruptionBudget", "pivot-api"),
        ("PodDisruptionBudget", "pivot-operator"),
        ("NetworkPolicy", "pivot-api"),
        ("NetworkPolicy", "pivot-redis"),
    ]:
        assert expected in kinds, expected
    assert not of_kind(docs, "Ingress")
    assert not of_kind(docs, "ServiceMonitor")
    operator = one(docs, "Deployment", "pivot-operator")
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "-m",
        "pivot_operator",
    ]
    api = one(docs, "Deployment", "pivot-api")
    assert api["spec"]["template"]["spec"]["containers"][0]["command"][:2] == [
        "uvicorn",
        "pivot_api.app:app",
    ]


def test_bundled_redis_persists_with_aof_on_a_pvc() -> None:
    redis = one(render(), "StatefulSet", "pivot-redis")
    assert redis["spec"]["replicas"] == 1
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mounts = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in mounts
    env = container_env(one(render(), "Deployment", "pivot-api"), "api")
    assert env["PIVOT_REDIS_URL"] == "redis://pivot-redis:6379/0"


@pytest.mark.parametrize("component", ["api", "operator"])
def test_external_redis_replaces_the_bundled_one(component: str) -> None:
    docs = render(VALUE_SETS["external-redis"])
    assert not of_kind(docs, "StatefulSet")
    assert not any(d["metadata"]["name"] == "pivot-redis" for d in docs)
    env = container_env(one(docs, "Deployment", f"pivot-{component}"), component)
    ref = env["PIVOT_REDIS_URL"]["secretKeyRef"]
    secret = one(docs, "Secret", ref["name"])
    assert secret["stringData"][ref["key"]] == "redis://r:6379/1"

    docs = render(VALUE_SETS["external-redis-secret"])
    env = container_env(one(docs, "Deployment", f"pivot-{component}"), component)
    assert env["PIVOT_REDIS_URL"] == {"secretKeyRef": {"name": "my-redis", "key": "redis-url"}}
    assert not [s for s in of_kind(docs, "Secret") if "redis" in s["metadata"]["name"]]


def test_ingress_routes_to_the_api_service() -> None:
    docs = render(VALUE_SETS["ingress"])
    ingress = one(docs, "Ingress", "pivot-api")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "pivot.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = one(docs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert "https://pivot.example.com/api/v1/health" in notes(VALUE_SETS["ingress"])


def test_auth_on_by_default_with_a_generated_key_and_off_when_asked() -> None:
    docs = render()
    env = container_env(one(docs, "Deployment", "pivot-api"), "api")
    assert env["PIVOT_AUTH_ENABLED"] == "true"
    ref = env["PIVOT_API_KEYS"]["secretKeyRef"]
    key = one(docs, "Secret", ref["name"])["stringData"][ref["key"]]
    assert len(key) >= 32

    docs = render({"api": {"auth": {"keys": ["k" * 20, "j" * 20]}}})
    assert one(docs, "Secret", "pivot-api-keys")["stringData"]["api-keys"] == (
        "k" * 20 + "," + "j" * 20
    )

    docs = render(VALUE_SETS["auth-off"])
    env = container_env(one(docs, "Deployment", "pivot-api"), "api")
    assert env["PIVOT_AUTH_ENABLED"] == "false"
    assert "PIVOT_API_KEYS" not in env
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "pivot-api-keys"]


def test_existing_secrets_are_used_and_not_created() -> None:
    docs = render(VALUE_SETS["existing-secrets-minio-monitoring"])
    assert [s["metadata"]["name"] for s in of_kind(docs, "Secret")] == []
    api = container_env(one(docs, "Deployment", "pivot-api"), "api")
    assert api["PIVOT_S3_ACCESS_KEY"]["secretKeyRef"] == {
        "name": "minio-creds",
        "key": "access-key-id",
    }
    assert api["PIVOT_API_KEYS"]["secretKeyRef"] == {"name": "my-keys", "key": "keys"}
    assert api["PIVOT_S3_ENDPOINT"] == "http://minio.minio:9000"
    assert api["PIVOT_NAMESPACE"] == "training"
    operator = container_env(one(docs, "Deployment", "pivot-operator"), "operator")
    assert operator["PIVOT_S3_SECRET"] == "minio-creds"
    assert operator["PIVOT_NAMESPACES"] == "training,training-b"


def test_s3_credentials_reach_every_namespace_trainers_run_in() -> None:
    docs = render(
        {"sessionNamespace": "training", "s3": {"accessKeyId": "AKIA", "secretAccessKey": "s3cr3t"}}
    )
    secrets = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "pivot-s3"]
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["pivot", "training"]
    for s in secrets:
        assert s["stringData"] == {"access-key-id": "AKIA", "secret-access-key": "s3cr3t"}


def test_configs_directory_is_served_from_a_configmap() -> None:
    docs = render({"configs": {"big.yaml": "epochs: 50\n"}})
    data = one(docs, "ConfigMap", "pivot-configs")["data"]
    for path in (REPO_ROOT / "configs").glob("*.yaml"):
        assert yaml.safe_load(data[path.name]) == yaml.safe_load(path.read_text())
    assert yaml.safe_load(data["big.yaml"]) == {"epochs": 50}
    api = one(docs, "Deployment", "pivot-api")
    env = container_env(api, "api")
    mounts = api["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "configs", "mountPath": env["PIVOT_CONFIGS_DIR"], "readOnly": True} in mounts
    # The reference's `config_path: configs/train.yaml` resolves when the dir is named configs.
    assert Path(env["PIVOT_CONFIGS_DIR"]).name == "configs"


def test_pod_disruption_budgets_follow_replicas() -> None:
    assert len(of_kind(render(), "PodDisruptionBudget")) == 2
    assert not of_kind(render(VALUE_SETS["single-replicas-no-netpol"]), "PodDisruptionBudget")
    assert not of_kind(render(VALUE_SETS["single-replicas-no-netpol"]), "NetworkPolicy")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_pod_is_locked_down_sized_and_probed(name: str) -> None:
    for where, spec in pod_specs(render(VALUE_SETS[name])):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            assert "livenessProbe" in c, where
            assert not c["image"].endswith(":"), where


def test_probes_hit_the_api_health_route_and_kopf_liveness() -> None:
    docs = render()
    api = one(docs, "Deployment", "pivot-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    operator = one(docs, "Deployment", "pivot-operator")["spec"]["template"]["spec"]
    probe = operator["containers"][0]["livenessProbe"]["httpGet"]
    env = container_env(one(docs, "Deployment", "pivot-operator"), "operator")
    port = next(
        p["containerPort"] for p in operator["containers"][0]["ports"] if p["name"] == probe["port"]
    )
    assert env["PIVOT_LIVENESS_ENDPOINT"] == f"http://0.0.0.0:{port}{probe['path']}"


def test_redis_network_policy_admits_trainer_pods_by_the_operators_label() -> None:
    from pivot_schema.crd import LABEL_MANAGED_BY, MANAGED_BY

    policy = one(render(), "NetworkPolicy", "pivot-redis")
    peers = policy["spec"]["ingress"][0]["from"]
    assert any(
        p.get("podSelector", {}).get("matchLabels") == {LABEL_MANAGED_BY: MANAGED_BY} for p in peers
    )


def test_model_servers_take_predictions_only_from_the_api_in_every_watched_namespace() -> None:
    """The policy selects the pods the operator labels as model servers, on the port their
    container names, in each namespace sessions (and servers) run in; its one peer is the API
    of the release's namespace, plus `modelServersFrom`."""
    from pivot_operator.config import OperatorConfig
    from pivot_operator.serving import Resolved, build_server_pod
    from pivot_schema.modelserver import StoredModelServer

    # A server pod as the operator builds it: the policy must select it, on its port's name.
    server = StoredModelServer.model_validate(
        {
            "metadata": {"name": "lesions", "namespace": "training", "uid": "u", "generation": 1},
            "spec": {"source": {"session": "sess-1"}, "replicas": 1},
        }
    )
    resolved = Resolved("ckpt", "s3://pivot/checkpoints/sess-1/e3/model.pth", "a" * 64)
    pod = build_server_pod(server, OperatorConfig(), "r" * 16, resolved)
    (port,) = pod["spec"]["containers"][0]["ports"]

    scraper = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    docs = render(
        {
            "sessionNamespace": "training",
            "operator": {"extraNamespaces": ["training-b"]},
            "networkPolicy": {"modelServersFrom": [scraper]},
        }
    )
    policies = [
        p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "pivot-model-servers"
    ]
    assert {p["metadata"]["namespace"] for p in policies} == {"training", "training-b"}
    api_labels = one(docs, "Deployment", "pivot-api")["spec"]["selector"]["matchLabels"]
    for policy in policies:
        spec = policy["spec"]
        selector = spec["podSelector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"port": port["name"], "protocol": "TCP"}]
        api, extra = rule["from"]
        assert api["podSelector"]["matchLabels"] == api_labels
        assert api["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "pivot"}
        assert extra == scraper
    assert not [
        p
        for p in of_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
        if p["metadata"]["name"] == "pivot-model-servers"
    ]


def test_generated_secret_values_are_strings() -> None:
    # stringData must be strings; a number here would be rejected by the API server.
    for secret in of_kind(render({"s3": {"accessKeyId": "1234"}}), "Secret"):
        for value in secret.get("stringData", {}).values():
            assert isinstance(value, str)
        for value in secret.get("data", {}).values():
            base64.b64decode(value)


def test_operator_replicas_elect_one_active_through_kopf_peering() -> None:
    docs = render({"operator": {"extraNamespaces": ["training-b"]}})
    env = container_env(one(docs, "Deployment", "pivot-operator"), "operator")
    peerings = of_kind(docs, "KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == {"pivot", "training-b"}
    assert {p["metadata"]["name"] for p in peerings} == {env["PIVOT_PEERING_NAME"]}
    assert "PIVOT_PEERING_PRIORITY" not in env  # one Deployment: each pod draws its own

    docs = render({"operator": {"replicas": 1}})
    assert not of_kind(docs, "KopfPeering")
    assert "PIVOT_PEERING_NAME" not in container_env(
        one(docs, "Deployment", "pivot-operator"), "operator"
    )


def test_rate_limits_are_set_and_trust_the_ingress_as_one_proxy() -> None:
    from pivot_api.auth import parse_keys
    from pivot_api.settings import Settings

    env = container_env(one(render(), "Deployment", "pivot-api"), "api")
    assert env["PIVOT_RATE_LIMIT_ENABLED"] == "true"
    limits = Settings(rate_limits=env["PIVOT_RATE_LIMITS"]).rate_limits
    assert limits == "100/minute;1000/hour"
    assert env["PIVOT_RATE_LIMIT_TRUSTED_PROXIES"] == "0"
    env = container_env(one(render(VALUE_SETS["ingress"]), "Deployment", "pivot-api"), "api")
    assert env["PIVOT_RATE_LIMIT_TRUSTED_PROXIES"] == "1"
    values = {"api": {"rateLimit": {"enabled": False, "trustedProxies": 2}}}
    env = container_env(one(render(values), "Deployment", "pivot-api"), "api")
    assert env["PIVOT_RATE_LIMIT_ENABLED"] == "false"
    assert env["PIVOT_RATE_LIMIT_TRUSTED_PROXIES"] == "2"
    # The key the chart generates is one the API accepts.
    docs = render()
    (key,) = parse_keys(one(docs, "Secret", "pivot-api-keys")["stringData"]["api-keys"])
    assert key.scope.label == "admin"


def test_alert_interval_and_webhook_allowlist_reach_the_api_as_its_settings() -> None:
    from pivot_api.settings import Settings

    def settings_of(values: dict[str, Any]) -> Settings:
        env = container_env(one(render(values), "Deployment", "pivot-api"), "api")
        with pytest.MonkeyPatch.context() as mp:
            for name in ("PIVOT_ALERT_INTERVAL_S", "PIVOT_WEBHOOK_ALLOWLIST"):
                mp.setenv(name, env[name])
            return Settings()

    default = settings_of({})
    assert (default.alert_interval_s, default.webhook_allowlist) == (10.0, [])
    custom = settings_of(
        {"api": {"alerts": {"intervalSeconds": 2.5}, "webhooks": {"allowlist": ["10.20.0.0/16"]}}}
    )
    assert (custom.alert_interval_s, custom.webhook_allowlist) == (2.5, ["10.20.0.0/16"])

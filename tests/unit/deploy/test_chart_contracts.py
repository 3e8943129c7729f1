"""What the chart must agree with: the CRDs and configs it copies, the env the operator and the
API read, and values.schema.json refusing values that would install something broken."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from pivot_api.settings import Settings
from pivot_operator import rbac
from tests.support.chart import (
    CHART_DIR,
    REPO_ROOT,
    container_env,
    grants_of,
    load_chart,
    one,
    render,
)


def test_chart_crds_are_byte_identical_copies_of_crds() -> None:
    canonical = {p.name: p.read_bytes() for p in (REPO_ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART_DIR / "crds").glob("*.yaml")}
    assert canonical, "crds/ has no CRD"
    assert copies.keys() == canonical.keys(), "helm/pivot/crds/ must hold exactly crds/*.yaml"
    for name, body in canonical.items():
        assert copies[name] == body, f"stale copy: cp crds/{name} helm/pivot/crds/"


def test_chart_configs_are_byte_identical_copies_of_configs() -> None:
    canonical = {p.name: p.read_bytes() for p in (REPO_ROOT / "configs").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART_DIR / "files" / "configs").glob("*.yaml")}
    assert canonical and copies == canonical, "cp configs/*.yaml helm/pivot/files/configs/"


ENV_READ = re.compile(r"""(?:_env|getenv|environ\.get|environ)\s*[(\[]\s*["'](PIVOT_[A-Z0-9_]+)""")
# Env the operator reads that the chart leaves out by default: PIVOT_OPERATOR_DEBUG is set only
# with operator.debug; PIVOT_PEERING_PRIORITY cannot differ between the pods of a Deployment
# (kopf pauses every peer when two share a priority), so the operator must choose its own.
OPTIONAL_OPERATOR_ENV = {"PIVOT_OPERATOR_DEBUG", "PIVOT_PEERING_PRIORITY"}


def operator_env_read() -> set[str]:
    names: set[str] = set()
    for path in (REPO_ROOT / "operator" / "pivot_operator").glob("*.py"):
        names |= set(ENV_READ.findall(path.read_text()))
    return names


def test_operator_env_matches_what_the_operator_reads() -> None:
    read = operator_env_read()
    assert {"PIVOT_NAMESPACES", "PIVOT_REDIS_URL", "PIVOT_TRAINER_IMAGE"} <= read  # the scan works
    for debug in (False, True):
        docs = render({"operator": {"debug": debug}})
        chart = {
            n
            for n in container_env(one(docs, "Deployment", "pivot-operator"), "operator")
            if n.startswith("PIVOT_")
        }
        assert ("PIVOT_OPERATOR_DEBUG" in chart) == debug
        missing = read - chart - OPTIONAL_OPERATOR_ENV
        assert not missing, f"the operator reads {sorted(missing)}; set them in the chart"
        unknown = chart - read
        assert not unknown, f"the chart sets {sorted(unknown)}, which the operator never reads"


REQUIRED_API_ENV = {
    "PIVOT_REDIS_URL",
    "PIVOT_S3_ENDPOINT",
    "PIVOT_S3_BUCKET",
    "PIVOT_S3_REGION",
    "PIVOT_S3_ACCESS_KEY",
    "PIVOT_S3_SECRET_KEY",
    "PIVOT_NAMESPACE",
    "PIVOT_CONFIGS_DIR",
}


def test_api_env_names_are_settings_fields() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    assert fields >= REQUIRED_API_ENV
    env = container_env(one(render(), "Deployment", "pivot-api"), "api")
    chart = {n for n in env if n.startswith("PIVOT_")}
    assert chart >= REQUIRED_API_ENV
    unknown = chart - fields
    assert not unknown, f"the chart sets {sorted(unknown)}, which pivot_api.settings ignores"


def test_helm_lint_is_clean() -> None:
    from .test_chart_render import VALUE_SETS

    for values in VALUE_SETS.values():
        report = helm.lint(str(CHART_DIR), values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


def test_defaults_pass_the_schema() -> None:
    load_chart().validate_schema({})


BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown top-level key": {"replicas": 3},
    "misspelt nested key": {"api": {"replica": 3}},
    "replicas as a string": {"api": {"replicas": "two"}},
    "negative replicas": {"operator": {"replicas": -1}},
    "unknown redis mode": {"redis": {"mode": "sentinel"}},
    "external redis without a url": {"redis": {"mode": "external"}},
    "redis url without a scheme": {"redis": {"mode": "external", "external": {"url": "r:6379"}}},
    "s3 endpoint without a scheme": {"s3": {"endpoint": "minio:9000"}},
    "invalid bucket name": {"s3": {"bucket": "My_Bucket"}},
    "auth.enabled as a string": {"api": {"auth": {"enabled": "yes"}}},
    "short api key": {"api": {"auth": {"keys": ["short"]}}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad namespace": {"sessionNamespace": "Not_A_Namespace"},
    "port out of range": {"api": {"port": 70000}},
    "config not yaml": {"configs": {"train.txt": "epochs: 1"}},
    "bad service type": {"api": {"service": {"type": "ExternalName"}}},
    "unknown operator log format": {"operator": {"logFormat": "xml"}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_wrong_values(case: str) -> None:
    with pytest.raises(helm.HelmError):
        load_chart().validate_schema(BAD_VALUES[case])
    # ... and so does an install: rendering checks the schema too.
    with pytest.raises(helm.HelmError):
        render(BAD_VALUES[case])


def test_chart_operator_rbac_stays_within_the_operators_written_down_rules() -> None:
    """pivot_operator.rbac lists what the operator may ever need; the chart grants a subset
    (tests/e2e/test_zz_rbac.py pins the subset to the requests really made)."""
    grants = grants_of(render(), "pivot-operator")
    assert grants
    beyond = sorted(
        (group, resource, verb)
        for _, group, resource, verb in grants
        if not rbac.allows(verb, group, *resource.split("/", 1))
    )
    assert not beyond, f"the chart grants the operator more than pivot_operator.rbac: {beyond}"

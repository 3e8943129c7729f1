from __future__ import annotations

from pivot_operator.rbac import RULES, allows, cluster_role


def test_rules_grant_what_the_reconciler_does_and_nothing_broad() -> None:
    assert allows("create", "", "pods")
    assert allows("patch", "pivot.dev", "trainingsessions", "status")
    assert allows("delete", "pivot.dev", "trainingsessions")
    assert not allows("get", "", "secrets")  # the trainer reads the S3 secret, not the operator
    assert not allows("create", "pivot.dev", "trainingsessions")
    assert all("*" not in r.verbs and "*" not in r.resources for r in RULES)


def test_cluster_role_renders_every_rule() -> None:
    role = cluster_role()
    assert role["kind"] == "ClusterRole"
    assert len(role["rules"]) == len(RULES)
    assert role["rules"][0]["apiGroups"] == ["pivot.dev"]

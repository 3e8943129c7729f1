"""Contracts shared by the API, the operator, the trainer and the local platform.

Nothing here imports kopf, FastAPI or torch: every part of PIVOT can depend on it.
"""

from pivot_schema.crd import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Condition,
    ConditionType,
    Phase,
    SessionStatus,
    TrainingSessionSpec,
    TrainingSessionStatus,
    api_status,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "ConditionType",
    "Phase",
    "SessionStatus",
    "TrainingSessionSpec",
    "TrainingSessionStatus",
    "api_status",
]

from __future__ import annotations

from pathlib import Path

import pytest

from pivot_api.settings import Settings


def test_settings_come_from_pivot_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIVOT_REDIS_URL", "redis://r:1/2")
    monkeypatch.setenv("PIVOT_S3_BUCKET", "b")
    monkeypatch.setenv("PIVOT_NAMESPACE", "ml")
    monkeypatch.setenv("PIVOT_CONFIGS_DIR", "/srv/configs")
    settings = Settings()
    assert settings.redis_url == "redis://r:1/2"
    assert settings.s3_bucket == "b"
    assert settings.namespace == "ml"
    assert settings.configs_dir == Path("/srv/configs")
    assert settings.api_prefix == "/api/v1"

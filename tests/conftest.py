"""Fixtures that start real servers once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pivot_local.services import RedisServer, S3Server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()

"""The server's environment: defaults, and one clear line for each bad value."""

from __future__ import annotations

import pytest

from pivot_schema.config import ConfigError
from pivot_trainer.serve.settings import ServeSettings, read_settings

SHA = "ab" * 32
BASE = {
    "PIVOT_SERVE_CHECKPOINT_URI": "s3://pivot/checkpoints/s/c/model.pth",
    "PIVOT_SERVE_SHA256": SHA,
}


def test_defaults_are_the_contracts() -> None:
    s = read_settings(BASE)
    assert s == ServeSettings(bucket="pivot", key="checkpoints/s/c/model.pth", sha256=SHA)
    assert (s.host, s.port, s.max_batch_size, s.max_delay_ms) == ("127.0.0.1", 8080, 16, 5.0)
    assert (s.threshold, s.compile, s.max_bytes, s.device) == (0.5, False, 16 * 2**20, None)
    assert s.uri == BASE["PIVOT_SERVE_CHECKPOINT_URI"]


def test_every_setting_is_read() -> None:
    s = read_settings(
        {
            **BASE,
            "PIVOT_SERVE_SHA256": SHA.upper(),  # hex digits in either case
            "PIVOT_SERVE_HOST": "127.0.0.7",
            "PIVOT_SERVE_PORT": "9000",
            "PIVOT_SERVE_MODEL": "lesions",
            "PIVOT_SERVE_CHECKPOINT_ID": "ckpt_s_e00001",
            "PIVOT_SERVE_MAX_BATCH_SIZE": "64",
            "PIVOT_SERVE_MAX_DELAY_MS": "2.5",
            "PIVOT_SERVE_THRESHOLD": "0.3",
            "PIVOT_SERVE_COMPILE": "true",
            "PIVOT_SERVE_MAX_BYTES": "1024",
            "PIVOT_DEVICE": "cuda:1",
            "PIVOT_S3_ENDPOINT": "http://s3:9000",
            "AWS_ACCESS_KEY_ID": "k",
        }
    )
    assert (s.host, s.port, s.model, s.checkpoint_id) == (
        "127.0.0.7",
        9000,
        "lesions",
        "ckpt_s_e00001",
    )
    assert (s.max_batch_size, s.max_delay_ms, s.threshold, s.compile) == (64, 2.5, 0.3, True)
    assert (s.max_bytes, s.device, s.s3_endpoint, s.s3_access_key) == (
        1024,
        "cuda:1",
        "http://s3:9000",
        "k",
    )
    assert s.sha256 == SHA


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PIVOT_SERVE_CHECKPOINT_URI": ""}, "PIVOT_SERVE_CHECKPOINT_URI is not set"),
        ({"PIVOT_SERVE_CHECKPOINT_URI": "http://x/y"}, "must be s3://bucket/key"),
        ({"PIVOT_SERVE_CHECKPOINT_URI": "s3://bucket-only"}, "must be s3://bucket/key"),
        ({"PIVOT_SERVE_SHA256": "abc"}, "PIVOT_SERVE_SHA256 must be 64 hex digits"),
        ({"PIVOT_SERVE_PORT": "http"}, "PIVOT_SERVE_PORT must be an integer"),
        ({"PIVOT_SERVE_MAX_BATCH_SIZE": "0"}, "PIVOT_SERVE_MAX_BATCH_SIZE must be between 1"),
        ({"PIVOT_SERVE_MAX_DELAY_MS": "nan"}, "PIVOT_SERVE_MAX_DELAY_MS must be between 0"),
        ({"PIVOT_SERVE_THRESHOLD": "1.5"}, "PIVOT_SERVE_THRESHOLD must be between 0 and 1"),
        ({"PIVOT_SERVE_COMPILE": "maybe"}, "PIVOT_SERVE_COMPILE must be true or false"),
        ({"PIVOT_DEVICE": "tpu"}, "PIVOT_DEVICE must be cpu or cuda"),
    ],
)
def test_a_bad_value_names_itself(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        read_settings({**BASE, **env})

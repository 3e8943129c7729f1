"""The local platform for the client tests. Its configs dir holds a `train.yaml` that trains
in seconds, so the reference's examples (which name `configs/train.yaml`) run verbatim
without the demo config's minutes of training."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from pivot_local.platform import LocalPlatform
from pivot_local.procs import free_port

from ...e2e.conftest import TINY_CONFIG


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    # Named exactly `configs`: the server resolves `configs/train.yaml` against its name.
    configs = tmp_path_factory.mktemp("client") / "configs"
    configs.mkdir()
    (configs / "train.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    with LocalPlatform(
        data_dir=tmp_path_factory.mktemp("pivot-client"), api_port=free_port(), configs_dir=configs
    ) as p:
        yield p

"""The local platform for the client tests. Its configs dir holds a `train.yaml` that trains
in seconds, so the reference's examples (which name `configs/train.yaml`) run verbatim
without the demo config's minutes of training."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from pivot_local.platform import LocalPlatform
from pivot_local.procs import free_port
from tests.support.platform import TINY_CONFIG
from tests.support.targets import NEEDS_PROCESS_KUBELET, REAL_KUBECONFIG


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if REAL_KUBECONFIG:  # its sessions train: that needs the process kubelet
        pytest.skip(NEEDS_PROCESS_KUBELET)
    # Named exactly `configs`: the server resolves `configs/train.yaml` against its name.
    configs = tmp_path_factory.mktemp("client") / "configs"
    configs.mkdir()
    (configs / "train.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    with (
        LocalPlatform(
            data_dir=tmp_path_factory.mktemp("pivot-client"),
            api_port=free_port(),
            configs_dir=configs,
            # Keys on, as deployed; rate limits off: these tests outrun 100 requests a minute.
            rate_limit=False,
            # Alert rules evaluated often, so an alert test waits a moment, not 10 s.
            extra_env={"PIVOT_ALERT_INTERVAL_S": "0.3"},
        ) as p,
        pytest.MonkeyPatch.context() as env,
    ):
        # Every client (SDK, CLI, TypeScript) reads its key from PIVOT_API_KEY.
        assert p.api_key is not None
        env.setenv("PIVOT_API_KEY", p.api_key)
        yield p

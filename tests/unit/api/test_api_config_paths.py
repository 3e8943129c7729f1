"""Where `config_path` may point, and what a config must hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivot_api.errors import NotFoundError, ValidationError
from pivot_api.sessions.configs import load_config_file, resolve_config_path, validate_config


@pytest.fixture
def configs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    (d / "sub").mkdir(parents=True)
    (d / "train.yaml").write_text("epochs: 3\n")
    (d / "sub" / "small.yaml").write_text("epochs: 1\n")
    (tmp_path / "secret.yaml").write_text("epochs: 9\n")
    return d


def test_a_name_inside_the_configs_dir_resolves(configs_dir: Path) -> None:
    assert resolve_config_path(configs_dir, "train.yaml") == (configs_dir / "train.yaml").resolve()
    assert resolve_config_path(configs_dir, "sub/small.yaml").name == "small.yaml"


def test_the_references_configs_prefix_resolves_inside_the_dir(configs_dir: Path) -> None:
    got = resolve_config_path(configs_dir, "configs/train.yaml")
    assert got == (configs_dir / "train.yaml").resolve()


def test_a_missing_file_is_not_found(configs_dir: Path) -> None:
    with pytest.raises(NotFoundError):
        resolve_config_path(configs_dir, "configs/nope.yaml")


@pytest.mark.parametrize(
    "path", ["../secret.yaml", "configs/../secret.yaml", "/etc/passwd", "sub/../../secret.yaml"]
)
def test_paths_leaving_the_configs_dir_are_refused(configs_dir: Path, path: str) -> None:
    with pytest.raises(ValidationError):
        resolve_config_path(configs_dir, path)


def test_a_symlink_pointing_out_is_refused(configs_dir: Path) -> None:
    (configs_dir / "escape.yaml").symlink_to(configs_dir.parent / "secret.yaml")
    with pytest.raises(ValidationError):
        resolve_config_path(configs_dir, "escape.yaml")


def test_yaml_that_does_not_parse_is_a_validation_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(ValidationError) as info:
        load_config_file(bad, "bad.yaml")
    assert info.value.status_code == 422


def test_yaml_that_is_not_a_mapping_is_a_validation_error(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ValidationError):
        load_config_file(listing, "list.yaml")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "config.epochs"),
        ({"epochs": 0}, "config.epochs"),
        ({"epochs": 2, "batch_size": 0}, "config.batch_size"),
    ],
)
def test_configs_breaking_the_schema_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_config(raw)
    assert info.value.details["field"] == field


def test_unknown_config_keys_are_kept() -> None:
    config = validate_config({"epochs": 2, "model": {"name": "unet"}})
    assert config["model"] == {"name": "unet"}


def test_the_shipped_example_config_is_accepted() -> None:
    repo_configs = Path(__file__).resolve().parents[3] / "configs"
    path = resolve_config_path(repo_configs, "configs/train.yaml")
    config = validate_config(load_config_file(path, "configs/train.yaml"))
    assert config["epochs"] >= 1

"""actionlint (with shellcheck on every `run:` script) and hadolint over the repository's
workflows, scripts and Dockerfiles: the real binaries from the dev extra's wheels."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.chart import REPO_ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The linter installed by `pip install -e .[dev]` beside this Python (or on PATH)."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, f"{name} is missing: pip install -e '.[dev]' installs it"
    return found


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # shellcheck must be on PATH for actionlint to check `run:` scripts.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
DOCKERFILES = [REPO_ROOT / "Dockerfile", REPO_ROOT / "trainer-image" / "Dockerfile"]
SHELL_SCRIPTS = [
    REPO_ROOT / "scripts" / "dev.sh",
    REPO_ROOT / ".ci" / "run",
    *sorted((REPO_ROOT / ".github").rglob("*.sh")),
]


def test_workflows_are_actionlint_clean() -> None:
    assert WORKFLOWS
    out = run([tool("actionlint"), "-shellcheck", tool("shellcheck"), *[str(p) for p in WORKFLOWS]])
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    assert run([tool("actionlint"), str(bad)]).returncode != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dockerfiles_are_hadolint_clean(dockerfile: Path) -> None:
    out = run([tool("hadolint"), "--failure-threshold", "style", str(dockerfile)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    assert run([tool("hadolint"), str(bad)]).returncode != 0


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shell_scripts_are_shellcheck_clean(script: Path) -> None:
    out = run([tool("shellcheck"), str(script)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_images_start_the_documented_commands() -> None:
    api_image = (REPO_ROOT / "Dockerfile").read_text()
    assert 'CMD ["uvicorn", "pivot_api.app:app"' in api_image
    assert "USER 10001:10001" in api_image
    assert api_image.count("\nFROM ") >= 2, "the API + operator image is multi-stage"
    trainer = (REPO_ROOT / "trainer-image" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "pivot_trainer"]' in trainer
    assert "\nUSER " in trainer


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the context) out of the build context:
    its patterns are plain names, `*` and `**/` globs, matched per path prefix as Docker does,
    the last matching one deciding (a `!` pattern lets a path back in)."""
    from fnmatch import fnmatch

    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        keep = raw.startswith("!")
        pattern = raw.removeprefix("!")
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch(prefix, pattern) or (
                pattern != bare and fnmatch(prefix.split("/")[-1], bare)
            ):
                excluded = not keep
                break
    return excluded


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_everything_the_dockerfiles_copy_is_in_the_build_context(dockerfile: Path) -> None:
    copies = [
        line.split()[1:-1]
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ") and "--from=" not in line
    ]
    assert copies
    for sources in copies:
        for src in sources:
            assert (REPO_ROOT / src).exists(), f"{dockerfile.name} copies missing {src}"
            assert not dockerignore_excludes(src), f".dockerignore drops {src}"
    assert dockerignore_excludes(".venv") and dockerignore_excludes("tests/unit")
    assert dockerignore_excludes("api/pivot_api/__pycache__")

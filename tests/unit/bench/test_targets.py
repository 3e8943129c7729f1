"""bench/README.md's Targets table states exactly the targets the benchmarks check
(bench/_targets.py), so the doc cannot drift from what `--check` enforces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[3]


def load_targets() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the module from its file.
    spec = importlib.util.spec_from_file_location("bench_targets", REPO / "bench" / "_targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def readme_targets() -> list[list[str]]:
    """The cells of the first table under the README's "## Targets" heading."""
    lines = (REPO / "bench" / "README.md").read_text().splitlines()
    start = lines.index("## Targets")
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break  # the table ended
    return rows


def test_readme_targets_table_matches_the_code() -> None:
    targets = load_targets()
    rows = readme_targets()
    assert rows, "bench/README.md has no table under '## Targets'"
    header, rule, *body = rows
    assert header == targets.README_HEADER
    assert all(set(cell) <= {"-", ":"} for cell in rule)
    want = [t.cells() for t in targets.TARGETS]
    missing = [r for r in want if r not in body]
    extra = [r for r in body if r not in want]
    assert not missing and not extra, (
        f"README lacks {missing}; README has, the code does not, {extra}; "
        "`python bench/_targets.py` prints the table"
    )
    assert body == want, "same targets, other order: paste `python bench/_targets.py`"


def test_targets_are_unique_and_verdicts_follow_direction() -> None:
    targets = load_targets()
    keys = [(t.bench, t.measure, t.statistic) for t in targets.TARGETS]
    assert len(keys) == len(set(keys))
    for t in targets.TARGETS:
        assert (REPO / "bench" / f"{t.bench}.py").exists(), t.bench
        assert t.met(t.limit) == (t.op in ("<=", ">="))
        below, above = t.limit * 0.5, t.limit * 2 + 1
        assert t.met(below) == (t.op in ("<", "<=")), t
        assert t.met(above) == (t.op in (">", ">=")), t


def test_check_exits_1_on_a_missed_target_and_skips_what_does_not_apply(
    tmp_path: Path, capsys: object
) -> None:
    import argparse

    import pytest

    targets = load_targets()
    args = argparse.Namespace(check=True, json=tmp_path / "results.json")
    ok = targets.Results("bench_operator")
    ok.record("CR create -> pod created", "p50", 12.0)
    ok.record("CR create -> pod created", "p99", 150.0)
    ok.record("CRs posted at once -> every pod created", "value", 99.0, size=20)  # n/a: 20 CRs
    ok.finish(args)  # nothing missed: returns
    verdicts = {t.statistic + t.measure: met for t, _, met in ok.verdicts()}
    assert verdicts["p99CR create -> pod created"] is True
    assert verdicts["valueCRs posted at once -> every pod created"] is None
    assert verdicts["maxoperator RSS, every session alive"] is None  # not run
    assert "CR create -> pod created" in (tmp_path / "results.json").read_text()

    bad = targets.Results("bench_operator")
    bad.record("CR create -> pod created", "p50", 12.0)
    bad.record("CR create -> pod created", "p99", 250.0)
    with pytest.raises(SystemExit) as exited:
        bad.finish(args)
    assert exited.value.code == 1
    bad.finish(argparse.Namespace(check=False, json=None))  # without --check: a report only

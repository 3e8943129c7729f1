"""The trainer's CUDA path, measured and checked in one command (issue 15).

    .venv/bin/python bench/bench_gpu.py [--device cuda|cpu] [--quick] [--require-gpu]
        [--skip-tests] [--rounds 3] [--check] [--json PATH]

Without a CUDA device it says so and exits 0 (2 with --require-gpu): there is nothing to
measure. With one, in two fresh processes (the second because `deterministic: true` changes
process-wide switches), it measures images/s of the trainer's own training step
(`Trainer.train_step`: UNet width 16, 256x256, batches of 64, Adam, focal loss):

  fp32       plain fp32 NCHW (no autocast, default layout), one batch already on the device
  bf16       the trainer's bf16 autocast + channels_last, one batch already on the device
  loader     bf16 fed by the DataLoader as the trainer had it before issue 15 (pinned pages,
             the copy on the compute stream)
  prefetch   bf16 fed by the DataLoader with its copies prefetched on a side stream (the
             trainer's path when the data does not fit on the device)
  device     bf16 fed from the data held on the device (`data_on_device`)
  compiled   `device` with torch.compile: images/s, the first step's time, the steps that
             repay it (against `device`), and what `compile: auto` estimates for the same
  determ.    `device` with `deterministic: true`

An input pipeline's cost is 1 - (its images/s / bf16's); bf16 and the three fed variants are
measured in interleaved rounds (median of --rounds). Then it runs the trainer's run/resume
tests with their trainers on the GPU (PIVOT_TEST_DEVICE=cuda; the pipeline's CUDA tests too)
and prints Markdown rows and the verdict against bench/_targets.py. The whole check is meant
to finish in under 8 minutes.

`--device cpu --quick` runs every part on CPU at toy sizes (a smoke: CPU numbers, recorded
under names no target has, and one test), so the script is known to work where no GPU is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _targets import Results, add_check_args  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 8 * 60

# The sizes, and a toy size for --quick.
FULL: dict[str, Any] = {
    "image_size": 256,
    "base_channels": 16,
    "batch_size": 64,
    "num_train": 1024,  # 16 whole batches an epoch: no second input shape for compile
    "warmup": 10,
    "timed": 100,
    "fp32_timed": 40,
}
QUICK: dict[str, Any] = {
    "image_size": 32,
    "base_channels": 4,
    "batch_size": 8,
    "num_train": 64,
    "warmup": 2,
    "timed": 6,
    "fp32_timed": 4,
}
FED = ("bf16", "loader", "prefetch", "device")
TESTS = [
    "tests/integration/trainer/test_trainer_run.py",
    "tests/unit/trainer/test_trainer_pipeline.py",
]
# The run/resume tests (SIGTERM, SIGKILL, rerun and extend, compiled vs eager, both input
# paths, compile: auto); the rest of the trainer suite does not depend on the device.
RUN_RESUME = (
    "train_checkpoint or sigterm or sigkill or compile or data_held or pipeline or corrupt_latest"
)
QUICK_TESTS = "compile_auto"

WORKER_PREFIX = "RESULT "


# -- worker processes: the measurements ---------------------------------------------------


def _config(sizes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "epochs": 1,
        "batch_size": sizes["batch_size"],
        "image_size": sizes["image_size"],
        "num_train": sizes["num_train"],
        "num_val": 1,
        "base_channels": sizes["base_channels"],
        "optimizer": "adam",
        "loss": "focal",
        "learning_rate": 1e-3,
        "seed": 1,
        "log_every_steps": 0,
        **extra,
    }


def _trainer(config: dict[str, Any], device: str, plain: bool = False) -> Any:
    """A built Trainer, no sink and no checkpoints: its train_step is what is timed."""
    from pivot_trainer.config import parse_config
    from pivot_trainer.process import StopFlag
    from pivot_trainer.runtime import read_env
    from pivot_trainer.sink import RecordSink
    from pivot_trainer.train import Precision, Trainer

    rt = read_env({"PIVOT_SESSION_ID": "bench-gpu", "PIVOT_DEVICE": device})
    trainer = Trainer(
        parse_config(config), rt, RecordSink(None, rt.session_id), StopFlag(), None, iter(())
    )
    if plain:
        import torch

        trainer.precision = Precision(False, torch.bfloat16, False, False, False)
    trainer._build()
    trainer.net.train()
    return trainer


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rate(trainer: Any, batches: Iterator[Any], sizes: dict[str, Any], timed: int) -> float:
    """images/s over `timed` steps, after the warm-up (cuDNN autotuning, allocator growth)."""
    device = str(trainer.device)
    for _ in range(sizes["warmup"]):
        trainer.train_step(*next(batches))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(timed):
        trainer.train_step(*next(batches))
    _sync(device)
    return timed * sizes["batch_size"] / (time.perf_counter() - t0)


def _epochs(source: Any, n: int) -> Iterator[Any]:
    """A source's batches epoch after epoch, each epoch in the trainer's order."""
    from pivot_trainer.pipeline import epoch_order

    for epoch in itertools.count(1):
        yield from source.batches(epoch_order(1, epoch, n))


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pivot_trainer.data import make_datasets
    from pivot_trainer.pipeline import DeviceData, HostData

    device, sizes = spec["device"], spec["sizes"]
    if spec["part"] == "deterministic":
        trainer = _trainer(_config(sizes, deterministic=True), device)  # before any CUDA op
    train = make_datasets(sizes["num_train"], 1, sizes["image_size"], 1)[0]
    n, bs, dev = sizes["num_train"], sizes["batch_size"], torch.device(device)
    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)

    if spec["part"] == "deterministic":
        held = DeviceData(train, dev, bs, trainer.precision.channels_last)
        out["determ"] = _rate(trainer, _epochs(held, n), sizes, sizes["timed"])
        return out

    fp32 = _trainer(_config(sizes), device, plain=True)
    one = next(DeviceData(train, dev, bs, False).batches(torch.arange(bs)))
    out["fp32"] = _rate(fp32, itertools.repeat(one), sizes, sizes["fp32_timed"])
    del fp32

    bf16 = _trainer(_config(sizes), device)
    cl, pin = bf16.precision.channels_last, bf16.precision.pin_memory
    held = DeviceData(train, dev, bs, cl)
    sources = {
        "bf16": lambda: itertools.repeat(next(held.batches(torch.arange(bs)))),
        "loader": lambda: _epochs(
            HostData(train, dev, bs, pin_memory=pin, channels_last=cl, prefetch=False), n
        ),
        "prefetch": lambda: _epochs(
            HostData(train, dev, bs, pin_memory=pin, channels_last=cl, prefetch=True), n
        ),
        "device": lambda: _epochs(held, n),
    }
    rounds: dict[str, list[float]] = {name: [] for name in FED}
    for _ in range(spec["rounds"]):  # interleaved: a drift in clocks hits every variant alike
        for name in FED:
            rounds[name].append(_rate(bf16, sources[name](), sizes, sizes["timed"]))
    out.update({name: statistics.median(rates) for name, rates in rounds.items()})
    out["rounds"] = rounds
    del bf16

    compiled = _trainer(_config(sizes, compile=True), device)
    batches = _epochs(held, n)
    _sync(device)
    t0 = time.perf_counter()
    compiled.train_step(*next(batches))
    _sync(device)
    out["compile_first_s"] = time.perf_counter() - t0
    out["compiled"] = _rate(compiled, batches, sizes, sizes["timed"])
    return out


def run_worker(args: argparse.Namespace, part: str, timeout: float) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    spec = {"part": part, "device": args.device, "sizes": sizes, "rounds": args.rounds}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if part != "deterministic":
        env.pop("CUBLAS_WORKSPACE_CONFIG", None)  # the default workspace, as a plain run has
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith(WORKER_PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_gpu: the {part} worker failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(WORKER_PREFIX) :])
    return result


# -- the tests ---------------------------------------------------------------------------


def run_tests(args: argparse.Namespace) -> dict[str, Any]:
    """The run/resume tests with their trainers on args.device; counts from a JUnit report."""
    selection = QUICK_TESTS if args.quick else RUN_RESUME
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
        cmd += ["-k", selection, f"--junitxml={report}"]
        try:
            import xdist  # noqa: F401

            if not args.quick:
                cmd += ["-n", "4"]  # trainers share the GPU; ~2 min instead of ~5
        except ImportError:
            pass
        env = {**os.environ, "PIVOT_TEST_DEVICE": args.device}
        print(f"running: PIVOT_TEST_DEVICE={args.device} {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        took = time.monotonic() - t0
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if report.exists():
            for suite in ET.parse(report).getroot().iter("testsuite"):
                for key in counts:
                    counts[key] += int(suite.get(key, 0))
    if proc.returncode not in (0, 1) or counts["tests"] == 0:
        print(proc.stdout[-4000:] + proc.stderr[-2000:], file=sys.stderr)
        counts["errors"] = max(counts["errors"], 1)  # no report, or pytest itself failed
    elif proc.returncode == 1:
        print(proc.stdout[-6000:], file=sys.stderr)
    failed = counts["failures"] + counts["errors"]
    passed = counts["tests"] - failed - counts["skipped"]
    return {"passed": passed, "failed": failed, "skipped": counts["skipped"], "seconds": took}


# -- the report --------------------------------------------------------------------------


def report(args: argparse.Namespace, tp: dict[str, Any], det: dict[str, Any] | None) -> Results:
    from pivot_trainer.autocompile import COMPILE_S, COMPILED_SPEEDUP

    results = Results("bench_gpu")
    gpu = tp.get("gpu") or "CPU"
    tag = "" if args.device.startswith("cuda") else " (cpu smoke)"  # targets are for GPUs
    sizes = QUICK if args.quick else FULL
    print(
        f"\n{gpu}, torch {tp['torch']}, CUDA {tp['cuda']}: UNet width "
        f"{sizes['base_channels']}, {sizes['image_size']}x{sizes['image_size']}, batches of "
        f"{sizes['batch_size']}, Adam, focal; median of {args.rounds} interleaved rounds\n"
    )
    print("| variant | images/s | vs fp32 NCHW | note |\n|---|---|---|---|")
    base = tp["fp32"]

    def row(label: str, value: float, note: str = "") -> None:
        print(f"| {label} | {value:,.0f} | {value / base:.2f}x | {note} |")

    def cost(name: str) -> float:
        return 100 * (1 - tp[name] / tp["bf16"])

    # The trainer's precision: bf16 autocast + channels_last on CUDA, plain fp32 on CPU.
    mode = "bf16 + CL" if args.device.startswith("cuda") else "the trainer's fp32 on CPU"
    row("plain fp32 NCHW, one batch on the device", base)
    row(f"{mode}, one batch on the device", tp["bf16"])
    labels = {
        "loader": f"{mode}, fed by the DataLoader (before issue 15)",
        "prefetch": f"{mode}, fed by the DataLoader, copies prefetched",
        "device": f"{mode}, fed from the data on the device",
    }
    for name, label in labels.items():
        row(label, tp[name], f"input pipeline costs {cost(name):.1f}%")
        results.record(f"input pipeline cost, {name}{tag}", "median", cost(name))
    step_eager = sizes["batch_size"] / tp["device"]
    step_compiled = sizes["batch_size"] / tp["compiled"]
    saving = step_eager - step_compiled
    repay = tp["compile_first_s"] / saving if saving > 0 else float("inf")
    estimate = COMPILE_S / (step_eager * (1 - 1 / COMPILED_SPEEDUP))
    row(
        "compiled, fed from the device",
        tp["compiled"],
        f"first step {tp['compile_first_s']:.1f} s; repaid after {repay:,.0f} steps "
        f"(compile: auto estimates {estimate:,.0f}: {COMPILED_SPEEDUP:.2f}x, {COMPILE_S:.0f} s)",
    )
    if det is not None:
        det_cost = 100 * (1 - det["determ"] / tp["device"])
        row("deterministic: true, fed from the device", det["determ"], f"costs {det_cost:.1f}%")
        results.record(f"deterministic: true cost{tag}", "value", det_cost)
    for name in ("fp32", *FED, "compiled"):
        results.record(f"images/s, {name}{tag}", "median", tp[name])
    results.record(f"compile: first step{tag}", "value", tp["compile_first_s"])
    results.record(f"compile: steps to repay{tag}", "value", repay)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", help="cuda (default where there is one) or cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (a smoke)")
    parser.add_argument("--require-gpu", action="store_true", help="exit 2 without CUDA")
    parser.add_argument("--skip-tests", action="store_true", help="measure only")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_check_args(parser)
    args = parser.parse_args()
    if args.worker:
        print(WORKER_PREFIX + json.dumps(_worker(json.loads(args.worker))), flush=True)
        return

    import torch

    cuda = torch.cuda.is_available()
    args.device = args.device or ("cuda" if cuda else None)
    if args.device is None or (args.device.startswith("cuda") and not cuda):
        print(
            "bench_gpu: no CUDA device here: nothing to measure (the GPU check needs one; "
            "--device cpu --quick runs its smoke on CPU)"
        )
        sys.exit(2 if args.require_gpu else 0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    t0 = time.monotonic()
    tp = run_worker(args, "throughput", timeout=360)
    det = run_worker(args, "deterministic", timeout=180)
    results = report(args, tp, det)
    tag = "" if args.device.startswith("cuda") else " (cpu smoke)"
    if not args.skip_tests:
        tests = run_tests(args)
        print(
            f"\ntrainer run/resume tests on {args.device}: {tests['passed']} passed, "
            f"{tests['failed']} failed, {tests['skipped']} skipped ({tests['seconds']:.0f} s)"
        )
        results.record(f"run/resume tests on the device, failed{tag}", "count", tests["failed"])
    wall = time.monotonic() - t0
    print(f"\nthe GPU check took {wall:.0f} s (budget {BUDGET_S} s)")
    if not args.skip_tests:
        results.record(f"GPU check, wall time{tag}", "value", wall)
    results.finish(args)
    if not args.skip_tests and tests["failed"]:
        sys.exit(1)  # a failed test fails the check, --check or not


if __name__ == "__main__":
    main()

"""`compile: auto`: the decision's arithmetic, and the probe that times the run's own steps.

The probe's clock and device sync are given to it; here a clock that advances a fixed time per
step stands in for a GPU's steps, so the window it times is checked exactly.
"""

from __future__ import annotations

import pytest

from pivot_trainer.autocompile import (
    COMPILE_S,
    COMPILED_SPEEDUP,
    PROBE_STEPS,
    WARMUP_STEPS,
    CompileProbe,
    Verdict,
    compile_pays,
    plan,
)

SAVED = 1 - 1 / COMPILED_SPEEDUP  # the share of an eager step that compiling saves


def test_compiling_pays_once_the_steps_left_repay_the_compile() -> None:
    step = 0.02  # 20 ms, an H200's eager step at the issue's sizes
    break_even = COMPILE_S / (step * SAVED)  # ~1,600 steps
    assert not compile_pays(step, int(break_even * 0.9)).compile
    verdict = compile_pays(step, int(break_even * 1.1))
    assert verdict.compile and "compiling" in verdict.reason and "20.00 ms" in verdict.reason
    # A second graph (a shorter last batch) doubles the compile to repay.
    assert not compile_pays(step, int(break_even * 1.5), recompiles=1).compile
    assert compile_pays(step, int(break_even * 2.1), recompiles=1).compile
    assert "(2 graphs)" in compile_pays(step, 10, recompiles=1).reason


class FakeGpu:
    """A clock that advances `step_s` per step taken, and counts the syncs asked of it."""

    def __init__(self, step_s: float) -> None:
        self.step_s, self.now, self.syncs = step_s, 100.0, 0

    def step(self) -> None:
        self.now += self.step_s

    def clock(self) -> float:
        return self.now

    def sync(self) -> None:
        self.syncs += 1


def _run(probe: CompileProbe, gpu: FakeGpu, epochs: list[int]) -> tuple[Verdict, int]:
    """Steps through epochs of the given lengths, validation taking 5 s between them; the
    verdict and the step after which it came."""
    taken = 0
    for length in epochs:
        for _ in range(length):
            gpu.step()
            taken += 1
            if verdict := probe.step_done():
                return verdict, taken
        if verdict := probe.epoch_end():  # as the trainer calls it: before validating
            return verdict, taken
        gpu.now += 5.0  # validation: never step time
    raise AssertionError("no verdict")


def test_the_probe_times_steps_after_the_warmup_with_two_syncs() -> None:
    gpu = FakeGpu(0.02)
    probe = CompileProbe(10_000, 0, gpu.sync, gpu.clock)
    verdict, at = _run(probe, gpu, [100] * 100)
    assert at == WARMUP_STEPS + PROBE_STEPS and gpu.syncs == 2
    assert verdict == compile_pays(0.02, 10_000 - at)
    assert probe.step_done() is None and gpu.syncs == 2  # decided once: no more syncs


def test_an_epoch_end_closes_the_window_so_validation_is_not_timed() -> None:
    gpu = FakeGpu(0.05)
    verdict, at = _run(CompileProbe(400, 1, gpu.sync, gpu.clock), gpu, [12] * 40)
    assert at == 12  # 7 steps timed (6..12), not the 5 s of validation after them
    assert verdict == compile_pays(0.05, 400 - 12, recompiles=1)


def test_a_window_opened_on_an_epochs_last_step_reopens_in_the_next() -> None:
    gpu = FakeGpu(0.03)
    verdict, at = _run(CompileProbe(1000, 0, gpu.sync, gpu.clock), gpu, [WARMUP_STEPS] + [50] * 20)
    assert at == WARMUP_STEPS + 1 + PROBE_STEPS
    assert verdict.reason == compile_pays(0.03, 1000 - at).reason


def test_a_run_too_short_to_time_trains_eagerly_at_once() -> None:
    planned = plan(WARMUP_STEPS + 1, 0, lambda: None)
    assert isinstance(planned, Verdict) and not planned.compile
    assert isinstance(plan(WARMUP_STEPS + 2, 0, lambda: None), CompileProbe)


@pytest.mark.parametrize("step_s", [0.001, 0.5])
def test_the_verdict_follows_the_measured_step(step_s: float) -> None:
    gpu = FakeGpu(step_s)
    verdict, _ = _run(CompileProbe(3000, 0, gpu.sync, gpu.clock), gpu, [1000] * 3)
    # 1 ms steps save ~1 s over 3,000 steps: not worth 12 s; 0.5 s steps save ~550 s.
    assert verdict.compile is (step_s == 0.5)

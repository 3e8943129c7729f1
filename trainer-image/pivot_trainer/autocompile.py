"""`compile: auto`: compile on CUDA only when the run is long enough to repay compiling.

torch.compile makes each step faster but its first step slow (Inductor builds the kernels).
Whether that pays depends on how many steps are left and how long each takes, so the trainer
times a few of its own first steps eagerly (real training steps, nothing is thrown away) and
then decides: compile when steps left x the estimated saving per step exceeds the estimated
compile time. The estimates are what one H200 measured (issue 15; bench/bench_gpu.py measures
them again on any GPU): UNet width 16, 256x256, batches of 64, bf16 + channels_last, eager
3,099 images/s, compiled 4,887, the first compiled step 12 s.

On CPU `auto` never compiles: Inductor's CPU kernels gain little on this model and each run
would pay a C++ build. A run resumed under `auto` decides again over what it has left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

COMPILED_SPEEDUP = 4887 / 3099  # compiled / eager step rate (H200, issue 15)
COMPILE_S = 12.0  # the first compiled step (H200, issue 15); a recompile is counted the same
WARMUP_STEPS = 5  # not timed: cuDNN autotuning, allocator growth, lazy CUDA initialisation
PROBE_STEPS = 20  # timed (fewer if the epoch ends first)


@dataclass(frozen=True)
class Verdict:
    compile: bool
    reason: str  # the decision's numbers, for the log


def compile_pays(eager_step_s: float, steps_left: int, recompiles: int = 0) -> Verdict:
    """Whether compiling repays its cost over `steps_left` steps of `eager_step_s` each.

    `recompiles`: graphs beyond the first that the run will build; a shorter last batch of an
    epoch is a second input shape, which dynamo compiles once more."""
    saving = steps_left * eager_step_s * (1 - 1 / COMPILED_SPEEDUP)
    cost = COMPILE_S * (1 + recompiles)
    pays = saving > cost
    return Verdict(
        pays,
        f"eager step {eager_step_s * 1e3:.2f} ms, {steps_left:,} steps left: compiling would "
        f"save ~{saving:.1f} s (at {COMPILED_SPEEDUP:.2f}x) for ~{cost:.0f} s of compiling"
        f"{f' ({1 + recompiles} graphs)' if recompiles else ''}: "
        + ("compiling" if pays else "training eagerly"),
    )


class CompileProbe:
    """Times steps of the run as it trains, then gives its verdict once.

    The window opens after WARMUP_STEPS and closes after PROBE_STEPS more or at the end of the
    epoch (validation must not count as step time), with one device sync at each end, so the
    steps in between still run without a host sync."""

    def __init__(
        self,
        steps_left: int,
        recompiles: int,
        sync: Callable[[], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.steps_left, self.recompiles = steps_left, recompiles
        self.sync, self.clock = sync, clock
        self.seen = 0  # steps of this run so far
        self.opened_at: float | None = None
        self.timed = 0  # steps inside the open window
        self.done = False

    def step_done(self) -> Verdict | None:
        if self.done:
            return None
        self.seen += 1
        if self.opened_at is None:
            if self.seen >= WARMUP_STEPS:
                self._open()
            return None
        self.timed += 1
        return self._close() if self.timed >= PROBE_STEPS else None

    def epoch_end(self) -> Verdict | None:
        """The epoch's last step is done: close a window with steps in it, drop an empty one."""
        if self.done or self.opened_at is None:
            return None
        if self.timed == 0:
            self.opened_at = None  # reopens after the next epoch's first step
            self.seen = max(self.seen, WARMUP_STEPS - 1)
            return None
        return self._close()

    def _open(self) -> None:
        self.sync()
        self.opened_at = self.clock()
        self.timed = 0

    def _close(self) -> Verdict:
        assert self.opened_at is not None
        self.sync()
        step_s = (self.clock() - self.opened_at) / self.timed
        self.done = True
        return compile_pays(step_s, self.steps_left - self.seen, self.recompiles)


def plan(steps_left: int, recompiles: int, sync: Callable[[], None]) -> CompileProbe | Verdict:
    """A probe for a run of `steps_left` steps, or at once a verdict for one too short to time."""
    if steps_left <= WARMUP_STEPS + 1:
        return Verdict(False, f"{steps_left} steps left, too few to repay compiling: eagerly")
    return CompileProbe(steps_left, recompiles, sync)

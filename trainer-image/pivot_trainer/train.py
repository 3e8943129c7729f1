"""The training loop: resume, train/validate per epoch, report to Redis, checkpoint to S3."""

from __future__ import annotations

import functools
import io
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import TensorDataset

from pivot_schema import keys, storage
from pivot_schema.storage import CheckpointManifest
from pivot_trainer import pipeline
from pivot_trainer.autocompile import CompileProbe, Verdict, plan
from pivot_trainer.checkpoint import CheckpointStore, Committed, order_key, to_delete
from pivot_trainer.checkpoint_writer import CheckpointWriter
from pivot_trainer.config import AUTO, ConfigError, TrainConfig
from pivot_trainer.data import load_datasets
from pivot_trainer.froc import FrocCounts
from pivot_trainer.gpu import GpuMonitor
from pivot_trainer.losses import build_loss
from pivot_trainer.metrics import PendingCounts, SegCounts
from pivot_trainer.model import UNet, convert_sync_batchnorm
from pivot_trainer.outcome import Ending, Outcome
from pivot_trainer.process import StopFlag
from pivot_trainer.rng import make_deterministic, rng_state, seed_all, set_rng_state
from pivot_trainer.runtime import Runtime, cpu_budget
from pivot_trainer.schedule import build_optimizer, build_scheduler, sync_lr
from pivot_trainer.sink import RecordSink

PAYLOAD_FORMAT = 1


def _copy_state(obj: Any) -> Any:
    """A deep copy in which every tensor is a detached CPU copy (state dicts hold live ones)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _copy_state(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_copy_state(v) for v in obj)
    return obj


class ResumeError(RuntimeError):
    """A verified checkpoint that this config cannot load (e.g. another model width)."""


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("PIVOT_DEVICE asks for cuda but no CUDA device is available")
    if requested == "cuda":
        return torch.device("cuda", local_rank)  # one GPU per process on a node
    return torch.device(requested)


@dataclass(frozen=True)
class Precision:
    autocast: bool  # run forward passes under torch.autocast(dtype)
    dtype: torch.dtype
    loss_scaling: bool  # fp16 needs a GradScaler; bf16 has fp32's range and does not
    channels_last: bool  # NHWC tensors: the layout cuDNN's tensor-core convolutions want
    pin_memory: bool  # page-locked host batches, so non_blocking copies overlap compute


def missing_compiler(cuda: bool, which: Any = shutil.which) -> str | None:
    """What torch.compile lacks to build kernels here, or None: Inductor compiles CPU
    kernels with a C++ compiler, and Triton builds its CUDA launcher with a C compiler.
    PyTorch's runtime images ship neither (pytorch/pytorch#116696)."""
    if cuda:
        if os.environ.get("CC") or any(which(c) for c in ("cc", "gcc", "clang")):
            return None
        return "no C compiler for Triton (cc, gcc or clang on PATH, or CC)"
    if os.environ.get("CXX") or any(which(c) for c in ("g++", "c++", "clang++")):
        return None
    return "no C++ compiler for Inductor's CPU kernels (g++, c++ or clang++ on PATH, or CXX)"


def choose_precision(device: torch.device, bf16_supported: bool) -> Precision:
    """bf16 autocast where the GPU has it (no loss scaling needed); fp16 plus a GradScaler on
    older GPUs; plain fp32 (no autocast, default layout, no pinning) on CPU."""
    if device.type != "cuda":
        return Precision(False, torch.bfloat16, False, False, False)
    dtype = torch.bfloat16 if bf16_supported else torch.float16
    return Precision(True, dtype, not bf16_supported, True, True)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        rt: Runtime,
        sink: RecordSink,
        stop: StopFlag,
        store: CheckpointStore | None,
        candidates: Iterator[tuple[CheckpointManifest, bytes]],
    ) -> None:
        self.cfg, self.rt, self.sink, self.stop = cfg, rt, sink, stop
        self.store, self.candidates = store, candidates
        self.device = pick_device(rt.device, rt.local_rank)
        self.cuda = self.device.type == "cuda"
        self.dist = rt.distributed
        self.precision = choose_precision(self.device, self.cuda and torch.cuda.is_bf16_supported())
        self.amp_dtype = self.precision.dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.loss_scaling)
        self.gpu_monitor = GpuMonitor(sink)

        # Position: `epoch` full epochs done plus `step` batches of the next one.
        self.epoch = 0
        self.step = 0
        self.global_step = 0  # optimizer steps over the whole run
        self.committed_at: tuple[int, int] = (0, 0)
        self.best_value: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.train_counts = SegCounts()
        self.pending_counts = PendingCounts()  # this epoch's batches not yet in train_counts
        self.committed: list[Committed] = []
        self.resumed_from: str | None = None
        self.latest_id: str | None = None
        self._writer = CheckpointWriter()
        # compile: auto on CUDA: a probe times the first steps, then the run compiles or not.
        self.auto_compile = False
        self.probe: CompileProbe | None = None
        self._time_next_step = False  # the first compiled step, timed for the log

    # -- setup -----------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.cfg
        seed_all(cfg.seed)
        if cfg.deterministic:
            make_deterministic()  # before the first CUDA op
        elif self.cuda:
            torch.backends.cudnn.benchmark = True
        self.model: torch.nn.Module = UNet(1, cfg.base_channels).to(self.device)
        if self.precision.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # `net` trains (DDP averages gradients across ranks); `model` is the plain module that
        # checkpoints hold and validation runs (no collectives, so ranks may validate unevenly).
        self.net: torch.nn.Module = self.model
        if self.dist and cfg.sync_batchnorm:
            # Per-rank BatchNorm statistics would come from a fraction of the global batch (a
            # different model from the single-process run); sync them across the gang.
            self.model, converted = convert_sync_batchnorm(self.model, cuda=self.cuda)
            self.net = self.model
            if converted and self.rt.is_main:
                print(f"pivot-trainer: {converted} BatchNorm layers synchronised across ranks")
        if self.dist:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.cuda else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        lacking = missing_compiler(self.cuda) if cfg.compile else None
        if lacking:
            self._say(f"compile: {str(cfg.compile).lower()}, but {lacking}: training eagerly")
        elif cfg.compile == AUTO:
            if self.cuda:
                self.auto_compile = True  # decided once the first steps are timed (_run)
            else:
                self._say("compile: auto: training eagerly (auto compiles only on CUDA)")
        elif cfg.compile:
            self._compile()
        self.optimizer = build_optimizer(self.model.parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.loss_fn = build_loss(cfg.loss, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma)

    def _say(self, line: str) -> None:
        if self.rt.is_main:
            print(f"pivot-trainer: {line}", flush=True)

    def _compile(self) -> None:
        # Compiles the training forward/backward on first use; checkpoints keep the plain
        # module's state dict, so compiled and eager runs resume each other. A graph the
        # backend cannot compile runs eagerly (with a warning) rather than failing the run:
        # compiling is an optimisation.
        import torch._dynamo as dynamo

        dynamo.config.suppress_errors = True
        self.net = torch.compile(self.net)  # type: ignore[assignment]

    def _settle(self, verdict: Verdict) -> None:
        """compile: auto's decision, the same on every rank of a gang (rank 0's)."""
        self.probe = None
        compile_now = verdict.compile
        if self.dist:
            flag = torch.tensor([float(compile_now)], device=self.device)
            torch.distributed.broadcast(flag, src=0)
            compile_now = bool(flag.item())
        self._say(f"compile: auto: {verdict.reason}")
        if compile_now:
            self._compile()
            self._time_next_step = True

    def _loadable(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, payload) of verified checkpoints that deserialise, newest first. In a gang,
        rank 0 picks and sends its bytes to every rank, so all resume from the same one."""
        if self.dist and not self.rt.is_main:
            box: list[Any] = [None, None]
            torch.distributed.broadcast_object_list(box, src=0)
            if box[0] is not None:
                yield box[0], torch.load(io.BytesIO(box[1]), map_location="cpu", weights_only=True)
            return
        chosen: tuple[str, bytes] | None = None
        for manifest, data in self.candidates:
            try:
                payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as exc:  # verified bytes that still don't load: try an older one
                print(f"pivot-trainer: skipping {manifest.checkpoint_id}: {exc}", file=sys.stderr)
                continue
            chosen = (manifest.checkpoint_id, data)
            break
        if self.dist:
            box = [chosen[0], chosen[1]] if chosen else [None, None]
            torch.distributed.broadcast_object_list(box, src=0)
        if chosen is not None:
            yield chosen[0], payload

    def _resume(self) -> None:
        """Load the newest verified checkpoint, if any (falls back past corrupt ones)."""
        for ckpt_id, payload in self._loadable():
            try:
                self.model.load_state_dict(payload["model"])
                self.optimizer.load_state_dict(payload["optimizer"])
                self.scheduler.load_state_dict(payload["scheduler"])
                if payload.get("scaler") and self.scaler.is_enabled():
                    self.scaler.load_state_dict(payload["scaler"])
            except (RuntimeError, KeyError, ValueError) as exc:
                raise ResumeError(f"checkpoint {ckpt_id} does not fit this config: {exc}") from exc
            sync_lr(self.optimizer, self.scheduler, self.cfg)
            set_rng_state(payload["rng"])
            self.epoch, self.step = int(payload["epoch"]), int(payload["step"])
            self.global_step = int(payload.get("global_step", 0))
            self.committed_at = (self.epoch, self.step)
            best = payload.get("best_value")
            self.best_value = None if best is None else float(best)
            self.last_metrics = {k: float(v) for k, v in payload.get("metrics", {}).items()}
            # Counts of a partial epoch are the whole gang's (merged before saving): rank 0
            # carries them on, the others start from zero, and the epoch's merge adds up.
            if payload.get("train_counts") and self.rt.is_main:
                self.train_counts = SegCounts(**payload["train_counts"])
            self.resumed_from = self.latest_id = ckpt_id
            return

    def _load_committed(self) -> None:
        """What retention needs to know about checkpoints already in S3."""
        if self.store is None:
            return
        for ckpt_id in self.store.committed_ids():
            order = order_key(ckpt_id)
            assert order is not None
            value = None
            if order[1] == 0 and self.cfg.checkpoint.keep_last is not None:
                manifest = self.store.read_manifest(ckpt_id)
                value = manifest.metric_value if manifest else None
            self.committed.append(Committed(ckpt_id, order[0], order[1], value))

    # -- checkpoints -----------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """The checkpoint's state, copied to CPU so that training can go on while another
        thread serialises and uploads it."""
        return _copy_state(
            {
                "format": PAYLOAD_FORMAT,
                "epoch": self.epoch,
                "step": self.step,
                "global_step": self.global_step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_state(),
                "train_counts": asdict(self.train_counts) if self.step else None,
                "best_value": self.best_value,
                "metrics": self.last_metrics,
                "config": self.cfg.to_dict(),
            }
        )

    def _checkpoint(self) -> None:
        if (
            not self.rt.is_main
            or self.store is None
            or (self.epoch, self.step) == self.committed_at
        ):
            return
        ck = self.cfg.checkpoint
        sid = self.rt.session_id
        partial = self.step > 0
        value: float | None = None
        is_best = False
        if partial:
            ckpt_id = storage.partial_checkpoint_id(sid, self.epoch, self.step)
        else:
            ckpt_id = storage.checkpoint_id(sid, self.epoch)
            value = self.last_metrics.get(ck.metric)
            if value is not None and math.isfinite(value):
                better = (
                    self.best_value is None
                    or (ck.mode == "max" and value > self.best_value)
                    or (ck.mode == "min" and value < self.best_value)
                )
                if better:
                    is_best, self.best_value = True, value
        snapshot = self._snapshot()  # the only part the training loop waits for
        job = (ckpt_id, snapshot, self.epoch, self.step, dict(self.last_metrics), value, is_best)
        self._writer.submit(functools.partial(self._commit, *job))  # after the upload in flight
        self.committed_at = (self.epoch, self.step)

    def wait_checkpoint(self) -> None:
        """Wait for the checkpoint in flight; its failure is the run's failure."""
        self._writer.wait()

    def _commit(
        self,
        ckpt_id: str,
        snapshot: dict[str, Any],
        epoch: int,
        step: int,
        metrics: dict[str, float],
        value: float | None,
        is_best: bool,
    ) -> None:
        assert self.store is not None
        ck = self.cfg.checkpoint
        buf = io.BytesIO()
        torch.save(snapshot, buf)
        # A run killed after this commit resumes after this epoch and never logs it again.
        self.sink.persist()
        manifest = self.store.save(
            ckpt_id,
            buf.getvalue(),
            epoch=epoch,
            metrics=metrics,
            metric_name=ck.metric,
            metric_value=value,
            is_best=is_best,
        )
        self.latest_id = ckpt_id
        self.committed = [c for c in self.committed if c.ckpt_id != ckpt_id]
        self.committed.append(Committed(ckpt_id, epoch, step, value))
        self.sink.event(
            keys.EVENT_CHECKPOINT,
            checkpoint_id=ckpt_id,
            epoch=epoch,
            step=step,
            is_best=is_best,
            metric_name=ck.metric,
            metric_value=value,
            size_bytes=manifest.size_bytes,
            sha256=manifest.sha256,
        )
        self._retain(ckpt_id)

    def _retain(self, latest_id: str) -> None:
        assert self.store is not None
        ck = self.cfg.checkpoint
        doomed = to_delete(
            self.committed, latest_id, keep_last=ck.keep_last, keep_best=ck.keep_best, mode=ck.mode
        )
        for ckpt_id in doomed:
            self.store.delete(ckpt_id)
        self.committed = [c for c in self.committed if c.ckpt_id not in set(doomed)]

    # -- the loop --------------------------------------------------------------------------

    def _sources(
        self, train_set: TensorDataset, val_set: TensorDataset
    ) -> tuple[pipeline.BatchSource, pipeline.BatchSource]:
        """Where the batches come from (pipeline.choose says why, and the log says it)."""
        setting = self.cfg.data_on_device
        weighed = setting == AUTO and self.cuda  # only auto on CUDA asks whether it fits
        size = pipeline.device_bytes(train_set) + pipeline.device_bytes(val_set) if weighed else 0
        choice = pipeline.choose(setting, self.device, size, pipeline.free_memory(self.device))
        if choice.on_device and self.cfg.num_workers:
            self._say(f"{choice.reason}; num_workers {self.cfg.num_workers} unused")
        else:
            self._say(choice.reason)
        return tuple(  # type: ignore[return-value]
            pipeline.make_source(
                dataset,
                self.device,
                choice.on_device,
                batch_size=self.cfg.batch_size,
                num_workers=self.cfg.num_workers,
                pin_memory=self.precision.pin_memory,
                channels_last=self.precision.channels_last,
            )
            for dataset in (train_set, val_set)
        )

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch already on the device; the loss, not read."""
        with torch.autocast(self.device.type, self.amp_dtype, self.precision.autocast):
            logits = self.net(x)
        loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # No host sync here on one GPU: the counts stay on the device until the epoch's
        # end, and the loss is read only when a step point is due.
        self.pending_counts.add(logits, y, loss)
        return loss

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _train_epoch(self, data: pipeline.BatchSource) -> bool:
        """Train the rest of epoch `self.epoch + 1`; False if stopped before its end."""
        order = pipeline.epoch_order(self.cfg.seed, self.epoch + 1, len(data))
        mine = pipeline.shard(order, self.rt.rank, self.rt.world_size)
        todo = mine[self.step * self.cfg.batch_size :]
        self.net.train()
        for x, y in data.batches(todo):
            timed = self._time_next_step
            if timed:
                self._sync()
                t0 = time.monotonic()
            loss = self.train_step(x, y)
            if timed:
                self._sync()
                self._time_next_step = False
                took = time.monotonic() - t0
                self._say(f"compile: auto: the first compiled step took {took:.1f} s")
            if self.probe is not None and (verdict := self.probe.step_done()):
                self._settle(verdict)
            self.step += 1
            self.global_step += 1
            every = self.cfg.log_every_steps
            due = bool(every) and self.step % every == 0
            stop, mean_loss = self._agree(loss, want_loss=due)
            if due and mean_loss is not None:
                self.sink.step(self.epoch + 1, self.step, self.global_step, mean_loss)
            if stop:
                return False
        if self.probe is not None and (verdict := self.probe.epoch_end()):
            self._settle(verdict)
        return True

    def _agree(
        self, loss: torch.Tensor | None = None, *, want_loss: bool = False
    ) -> tuple[bool, float | None]:
        """(does any rank want to stop, the ranks' mean loss if wanted): one small all-reduce
        per step in a gang, so a SIGTERM on any pod stops every rank after the same step;
        alone, the loss is read (a host sync) only when wanted."""
        if not self.dist:
            return self.stop.requested, float(loss) if want_loss and loss is not None else None
        device = self.device if self.cuda else torch.device("cpu")  # nccl reduces on the GPU
        flag = torch.tensor(float(self.stop.requested), dtype=torch.float64, device=device)
        value = torch.zeros_like(flag) if loss is None else loss.detach().double().to(device)
        t = torch.stack([flag, value])
        torch.distributed.all_reduce(t)
        stop, total = t.tolist()
        return stop > 0, total / self.rt.world_size

    def _gather(self, item: Any) -> list[Any]:
        """Every rank's `item` (rank order); just [item] alone."""
        if not self.dist:
            return [item]
        out: list[Any] = [None] * self.rt.world_size
        torch.distributed.all_gather_object(out, item)
        return out

    def _merge_train_counts(self) -> None:
        """Rank 0 holds the whole gang's running train counts, the others none."""
        self.pending_counts.drain(self.train_counts)
        if not self.dist:
            return
        parts = self._gather(self.train_counts)
        merged = SegCounts()
        if self.rt.is_main:
            for part in parts:
                merged.merge(part)
        self.train_counts = merged

    @torch.no_grad()
    def _validate(self, data: pipeline.BatchSource) -> tuple[SegCounts, FrocCounts] | None:
        self.model.eval()
        counts, froc = SegCounts(), FrocCounts()
        # Plain (unpadded) shards: every image counts exactly once over the gang.
        indices = torch.arange(len(data))[self.rt.rank :: self.rt.world_size]
        for x, y in data.batches(indices):
            with torch.autocast(self.device.type, self.amp_dtype, self.precision.autocast):
                logits = self.model(x)
            counts.update(logits, y, float(self.loss_fn(logits.float(), y).item()))
            froc.update(logits, y)
            if self.stop.requested and not self.dist:  # a gang agrees on stopping at steps
                return None
        if self.dist:
            merged_counts, merged_froc = SegCounts(), FrocCounts()
            for part_counts, part_froc in self._gather((counts, froc)):
                merged_counts.merge(part_counts)
                merged_froc.merge(part_froc)
            return merged_counts, merged_froc
        return counts, froc

    def run(self) -> Outcome:
        """Train to the config's last epoch or a stop; a failure is an outcome too (its
        error attached), reported once the gang has been left and the threads have ended."""
        try:
            ending = self._run_in_gang()
        except Exception as exc:
            return self._outcome(Ending.FAILED, error=exc)
        return self._outcome(ending)

    def _outcome(self, ending: Ending, error: Exception | None = None) -> Outcome:
        return Outcome(
            ending,
            epoch=self.epoch,
            total_epochs=self.cfg.epochs,
            step=self.step,
            checkpoint_id=self.latest_id,
            metrics=dict(self.last_metrics),
            best_metric=self.best_value,
            error=error,
        )

    def _run_in_gang(self) -> Ending:
        # One intra-op thread per usable core; an explicit OMP_NUM_THREADS wins (torch read it).
        if not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(cpu_budget())
        threads = torch.get_num_threads()
        if self.dist:
            # gloo on CPU, nccl on CUDA; the operator gives every pod the same rendezvous.
            torch.distributed.init_process_group(
                "nccl" if self.cuda else "gloo",
                init_method=f"tcp://{self.rt.master_addr}:{self.rt.master_port}",
                rank=self.rt.rank,
                world_size=self.rt.world_size,
            )
        try:
            ending = self._run(threads)
            if self.dist:
                # Leave together: a gloo rank whose peer tears down first can abort at exit
                # ("terminate called without an active exception").
                self.wait_checkpoint()
                torch.distributed.barrier()
            return ending
        finally:
            self._writer.close()
            self.gpu_monitor.stop()
            if self.dist:
                torch.distributed.destroy_process_group()

    def _run(self, threads: int) -> Ending:
        cfg, sid = self.cfg, self.rt.session_id
        self._build()
        self._resume()
        if self.epoch >= cfg.epochs:  # only when the newest checkpoint failed to load
            return Ending.ALREADY_DONE
        self._load_committed()
        emitted = self.sink.last_metric_epoch()  # records a crashed run already wrote
        train_data, val_data = self._sources(*load_datasets(cfg, self.rt))
        per_rank = math.ceil(len(train_data) / self.rt.world_size)
        steps = math.ceil(per_rank / cfg.batch_size)
        if self.auto_compile:
            left = (cfg.epochs - self.epoch) * steps - self.step
            # A shorter last batch is a second input shape: dynamo compiles a second graph.
            planned = plan(left, int(per_rank % cfg.batch_size > 0), self._sync)
            if isinstance(planned, Verdict):
                self._settle(planned)
            else:
                self.probe = planned
        gang = f"rank {self.rt.rank}/{self.rt.world_size}, " if self.dist else ""
        print(
            f"pivot-trainer: session {sid} {gang}on {self.device} ({threads} threads), epochs "
            f"{self.epoch + 1}..{cfg.epochs}"
            + (f", resumed from {self.resumed_from}" if self.resumed_from else ""),
            flush=True,
        )
        if cfg.ignored_keys:
            print(f"pivot-trainer: ignoring unknown config keys: {', '.join(cfg.ignored_keys)}")
        self.sink.event(
            keys.EVENT_STARTED,
            epoch=self.epoch + 1,
            step=self.step,
            total_epochs=cfg.epochs,
            resumed_from=self.resumed_from,
            device=str(self.device),
            world_size=self.rt.world_size,
        )
        self.sink.start()  # from here on records go out from a background thread
        if self.sink.enabled:
            self.gpu_monitor.start()  # quietly nothing without NVML

        stopped = False
        while self.epoch < cfg.epochs:
            stopped = self._agree()[0]
            if stopped:
                break
            t0 = time.monotonic()
            lr = float(self.optimizer.param_groups[0]["lr"])
            if self.step < steps and not self._train_epoch(train_data):
                stopped = True
                break
            self._merge_train_counts()
            validated = self._validate(val_data)
            if validated is None:
                stopped = True
                break
            val, froc = validated
            epoch = self.epoch + 1
            self.last_metrics = {
                "train_loss": self.train_counts.loss,
                "val_loss": val.loss,
                "train_accuracy": self.train_counts.accuracy,
                "val_accuracy": val.accuracy,
                "val_dice": val.dice,
                "val_froc": froc.froc,
                "learning_rate": lr,
            }
            self.epoch, self.step, self.train_counts = epoch, 0, SegCounts()
            self.scheduler.step()
            if epoch > emitted:
                self.sink.metric(epoch, self.last_metrics)
            if epoch % cfg.checkpoint.every_epochs == 0 or epoch == cfg.epochs:
                self._checkpoint()
            self.sink.wake()
            if self.rt.is_main:
                shown = " ".join(f"{k}={v:.4g}" for k, v in self.last_metrics.items())
                took = time.monotonic() - t0
                print(f"epoch {epoch}/{cfg.epochs} {shown} ({took:.1f}s)", flush=True)

        if stopped:
            self._merge_train_counts()  # a partial epoch's counts go into the checkpoint
            self._checkpoint()
        self.wait_checkpoint()
        return Ending.STOPPED if stopped else Ending.COMPLETED

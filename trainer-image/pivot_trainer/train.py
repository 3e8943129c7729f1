"""The training loop: resume, train/validate per epoch, report to Redis, checkpoint to S3."""

from __future__ import annotations

import io
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from pivot_schema import keys, storage
from pivot_schema.storage import CheckpointManifest
from pivot_trainer.app import EXIT_OK, FINAL_FLUSH_S, STOP_FLUSH_S, StopFlag
from pivot_trainer.checkpoint import CheckpointStore, Committed, order_key, to_delete
from pivot_trainer.config import ConfigError, TrainConfig
from pivot_trainer.data import make_datasets
from pivot_trainer.losses import build_loss
from pivot_trainer.metrics import SegCounts
from pivot_trainer.model import UNet
from pivot_trainer.runtime import Runtime, cpu_budget
from pivot_trainer.schedule import build_optimizer, build_scheduler, sync_lr
from pivot_trainer.sink import RecordSink

PAYLOAD_FORMAT = 1


class ResumeError(RuntimeError):
    """A verified checkpoint that this config cannot load (e.g. another model width)."""


def _ignore_sigterm(_worker_id: int) -> None:
    # The kubelet signals the whole process group; the main process decides when workers stop.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pick_device(requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("PIVOT_DEVICE asks for cuda but no CUDA device is available")
    return torch.device(requested)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(npst["key"], dtype=np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


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
        self.device = pick_device(rt.device)
        self.cuda = self.device.type == "cuda"

        # Position: `epoch` full epochs done plus `step` batches of the next one.
        self.epoch = 0
        self.step = 0
        self.committed_at: tuple[int, int] = (0, 0)
        self.best_value: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.train_counts = SegCounts()
        self.committed: list[Committed] = []
        self.resumed_from: str | None = None
        self.latest_id: str | None = None

    # -- setup -----------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.model = UNet(1, cfg.base_channels).to(self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            torch.backends.cudnn.benchmark = True
        self.optimizer = build_optimizer(self.model.parameters(), cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.loss_fn = build_loss(cfg.loss, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma)

    def _resume(self) -> None:
        """Load the newest verified checkpoint, if any (falls back past corrupt ones)."""
        for manifest, data in self.candidates:
            try:
                payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as exc:  # verified bytes that still don't load: try an older one
                print(f"pivot-trainer: skipping {manifest.checkpoint_id}: {exc}", file=sys.stderr)
                continue
            try:
                self.model.load_state_dict(payload["model"])
                self.optimizer.load_state_dict(payload["optimizer"])
                self.scheduler.load_state_dict(payload["scheduler"])
            except (RuntimeError, KeyError, ValueError) as exc:
                raise ResumeError(
                    f"checkpoint {manifest.checkpoint_id} does not fit this config: {exc}"
                ) from exc
            sync_lr(self.optimizer, self.scheduler, self.cfg)
            _set_rng_state(payload["rng"])
            self.epoch, self.step = int(payload["epoch"]), int(payload["step"])
            self.committed_at = (self.epoch, self.step)
            best = payload.get("best_value")
            self.best_value = None if best is None else float(best)
            self.last_metrics = {k: float(v) for k, v in payload.get("metrics", {}).items()}
            if payload.get("train_counts"):
                self.train_counts = SegCounts(**payload["train_counts"])
            self.resumed_from = self.latest_id = manifest.checkpoint_id
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

    def _payload(self) -> bytes:
        buf = io.BytesIO()
        torch.save(
            {
                "format": PAYLOAD_FORMAT,
                "epoch": self.epoch,
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": _rng_state(),
                "train_counts": asdict(self.train_counts) if self.step else None,
                "best_value": self.best_value,
                "metrics": self.last_metrics,
                "config": self.cfg.to_dict(),
            },
            buf,
        )
        return buf.getvalue()

    def _checkpoint(self) -> None:
        if self.store is None or (self.epoch, self.step) == self.committed_at:
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
        manifest = self.store.save(
            ckpt_id,
            self._payload(),
            epoch=self.epoch,
            metrics=self.last_metrics,
            metric_name=ck.metric,
            metric_value=value,
            is_best=is_best,
        )
        self.committed_at = (self.epoch, self.step)
        self.latest_id = ckpt_id
        self.committed = [c for c in self.committed if c.ckpt_id != ckpt_id]
        self.committed.append(Committed(ckpt_id, self.epoch, self.step, value))
        self.sink.event(
            keys.EVENT_CHECKPOINT,
            checkpoint_id=ckpt_id,
            epoch=self.epoch,
            step=self.step,
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

    def _to_device(self, x: torch.Tensor, image: bool) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if image and self.cuda else x

    def _loader(self, dataset: Any, indices: list[int]) -> torch.utils.data.DataLoader[Any]:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=indices,
            num_workers=self.cfg.num_workers,
            pin_memory=self.cuda,
            worker_init_fn=_ignore_sigterm if self.cfg.num_workers else None,
        )

    def _train_epoch(self, train_set: Any) -> bool:
        """Train the rest of epoch `self.epoch + 1`; False if stopped before its end."""
        # The order is a function of (seed, epoch): a mid-epoch resume skips exactly the
        # batches already done.
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + self.epoch + 1)
        order = torch.randperm(len(train_set), generator=g).tolist()
        todo = order[self.step * self.cfg.batch_size :]
        self.model.train()
        for x, y in self._loader(train_set, todo):
            x, y = self._to_device(x, True), self._to_device(y, False)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
                logits = self.model(x)
            loss = self.loss_fn(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.train_counts.update(logits, y, float(loss.item()))
            self.step += 1
            if self.stop.requested:
                return False
        return True

    @torch.no_grad()
    def _validate(self, val_set: Any) -> SegCounts | None:
        self.model.eval()
        counts = SegCounts()
        for x, y in self._loader(val_set, list(range(len(val_set)))):
            x, y = self._to_device(x, True), self._to_device(y, False)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
                logits = self.model(x)
            counts.update(logits, y, float(self.loss_fn(logits.float(), y).item()))
            if self.stop.requested:
                return None
        return counts

    def run(self) -> int:
        cfg, sid = self.cfg, self.rt.session_id
        # One intra-op thread per usable core; an explicit OMP_NUM_THREADS wins (torch read it).
        if not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(cpu_budget())
        threads = torch.get_num_threads()
        self._build()
        self._resume()
        if self.epoch >= cfg.epochs:  # only when the newest checkpoint failed to load
            print(f"pivot-trainer: session {sid} already finished", flush=True)
            return EXIT_OK
        self._load_committed()
        emitted = self.sink.last_metric_epoch()  # records a crashed run already wrote
        train_set, val_set = make_datasets(cfg.num_train, cfg.num_val, cfg.image_size, cfg.seed)
        steps = math.ceil(len(train_set) / cfg.batch_size)
        print(
            f"pivot-trainer: session {sid} on {self.device} ({threads} threads), epochs "
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
        )
        self.sink.flush()

        while self.epoch < cfg.epochs and not self.stop.requested:
            t0 = time.monotonic()
            lr = float(self.optimizer.param_groups[0]["lr"])
            if self.step < steps and not self._train_epoch(train_set):
                break
            val = self._validate(val_set)
            if val is None:
                break
            epoch = self.epoch + 1
            self.last_metrics = {
                "train_loss": self.train_counts.loss,
                "val_loss": val.loss,
                "train_accuracy": self.train_counts.accuracy,
                "val_accuracy": val.accuracy,
                "val_dice": val.dice,
                "learning_rate": lr,
            }
            self.epoch, self.step, self.train_counts = epoch, 0, SegCounts()
            self.scheduler.step()
            if epoch > emitted:
                self.sink.metric(epoch, self.last_metrics)
            if epoch % cfg.checkpoint.every_epochs == 0 or epoch == cfg.epochs:
                self._checkpoint()
            self.sink.flush()
            shown = " ".join(f"{k}={v:.4g}" for k, v in self.last_metrics.items())
            print(f"epoch {epoch}/{cfg.epochs} {shown} ({time.monotonic() - t0:.1f}s)", flush=True)

        if self.stop.requested:
            self._checkpoint()
            self.sink.event(
                keys.EVENT_STOPPED,
                epoch=self.epoch,
                step=self.step,
                signal=signal.Signals(self.stop.signum or signal.SIGTERM).name,
                checkpoint_id=self.latest_id,
            )
            self.sink.close(STOP_FLUSH_S)
            print(f"pivot-trainer: stopped at epoch {self.epoch} step {self.step}", flush=True)
            return self.stop.exit_code
        self.sink.event(
            keys.EVENT_COMPLETED,
            epoch=self.epoch,
            total_epochs=cfg.epochs,
            metrics=self.last_metrics,
            best_metric=self.best_value,
            checkpoint_id=self.latest_id,
        )
        self.sink.close(
            FINAL_FLUSH_S, hurry=lambda: self.stop.requested, hurry_timeout=STOP_FLUSH_S
        )
        print(f"pivot-trainer: session {sid} completed {cfg.epochs} epochs", flush=True)
        return EXIT_OK

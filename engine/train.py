"""The training loop and its events (the Trainer); engine.runner starts, resumes and fine-tunes runs around it.

Metrics are accumulated on the device and read once per log interval, so the step never waits on the host;
events go to the run folder's `events.jsonl`.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import checkpoint as ckpt
from engine import distributed
from engine.compare import model_section_label
from engine.config import ExperimentConfig
from engine.errors import CheckpointError, EngineError
from engine.evaluate import loss_and_accuracy, predict_logits
from engine.events import EventWriter
from engine.inference import is_out_of_memory, out_of_memory_error
from engine.prefetch import AugmentedBatches
from engine.presets import content_hash, resolved_yaml
from engine.runs import write_status
from engine.runtime import (
    StopRequest,
    autocast,
    autocast_dtype,
    configure_cpu_threads,
    gpu_memory_mb,
    pick_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from engine.setup import TrainingParts, build_parts


STEPPED_SCHEDULES = ("step", "multistep", "plateau")  # schedules whose LR drops are marked in events


class Diverged(EngineError):
    """The loss became NaN or infinite."""


@dataclass
class Progress:
    """Counters and best-so-far values; all of it goes into the training state of a checkpoint."""

    epoch: int = 0                 # epochs fully done
    step_in_epoch: int = 0         # micro-batches done in the current (unfinished) epoch
    global_step: int = 0           # optimizer steps done
    best_value: float | None = None
    best_epoch: int | None = None
    best_val_acc: float | None = None
    stale_epochs: int = 0          # early stopping counter
    early_best: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Trainer:
    """Owns one run: parts, loop, checkpoints, status and events."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, events: EventWriter,
                 stop: StopRequest | None = None, *, parent: str | None = None,
                 dist_info: distributed.Dist = distributed.SINGLE) -> None:
        self.config = config
        self.run_dir = run_dir
        self.events = events
        self.stop = stop or StopRequest()
        self.parent = parent
        self.dist = dist_info
        self.device = distributed.init(dist_info, pick_device(config.train.device))
        self.amp = autocast_dtype(config.train.precision, self.device)
        self.channels_last = config.train.channels_last and self.device.type == "cuda"
        self.progress = Progress()
        self.restored = False       # set once a resume has loaded its checkpoint
        self.started = time.time()
        self.wall_before = 0.0      # wall seconds spent in earlier sessions of this run (resume)
        self.status: dict[str, Any] = {}
        self.parts: TrainingParts | None = None
        self.config_text = resolved_yaml(config)
        self.model_preset = model_section_label(config.model)  # the preset a listing names the model by

    # ------------------------------------------------------------------ setup

    def setup(self, *, resume_from: Path | None = None) -> None:
        """Seed, load data, build model/optimizer/schedule; restore a checkpoint when resuming."""
        seed_everything(self.config.train.seed, self.config.train.deterministic, self.device)
        if self.config.train.precision != "fp32" and self.amp is None:
            self.events.emit("warning", message=f"train.precision={self.config.train.precision} needs CUDA; "
                                                f"this run on {self.device.type} computes in fp32")
        configure_cpu_threads(self.config.train.cpu_threads, self.device)
        try:
            self.parts = build_parts(self.config, self.device, self.events, resuming=resume_from is not None,
                                     dist_info=self.dist,  # under torchrun every rank loads on: no rank left alone
                                     stop=None if self.dist.enabled else self.stop)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory_error(exc, "setting up the run (data table, model)", self.config.train.batch_size,
                                      "train.batch_size", self.device) from exc
        if self.dist.enabled:  # same initial weights everywhere, then independent dropout draws per rank
            torch.manual_seed(self.config.train.seed + 1000 * self.dist.rank)
        if resume_from is not None:
            self._restore(ckpt.load_checkpoint(resume_from))
        self.record_status("running")

    def _restore(self, loaded: ckpt.Checkpoint) -> None:
        parts = self.parts
        assert parts is not None and loaded.state is not None
        state = loaded.state
        parts.model.load_state_dict(loaded.weights)
        if parts.ema is not None and loaded.ema is not None:
            parts.ema.load_state_dict(loaded.ema)
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            parts.scaler.load_state_dict(state["scaler"])
        ranks = state["rng_ranks"]
        if len(ranks) != self.dist.world_size:
            raise CheckpointError(f"the checkpoint was written by {len(ranks)} processes; resume with as many "
                                  f"(now {self.dist.world_size}): resume {self.run_dir.name} --nproc {len(ranks)}, or as "
                                  "many in all across machines")
        set_rng_state(ranks[self.dist.rank]["rng"], self.device)
        parts.generator.set_state(ranks[self.dist.rank]["aug_generator"])
        self.progress = Progress(**state["progress"])
        self.partial = state.get("partial")
        self.wall_before = float(state.get("wall_s", 0.0))
        self.restored = True

    # ------------------------------------------------------------------ loop

    def run(self) -> dict[str, Any]:
        """Train to the end (or to a stop/early stop/divergence); returns the final status."""
        parts = self.parts
        assert parts is not None
        epochs = self.config.train.epochs
        reason = "completed"
        try:
            while self.progress.epoch < epochs:
                done = self._train_epoch(self.progress.epoch)
                if not done:
                    reason = "interrupted"
                    break
                if self._end_epoch(self.progress.epoch - 1):
                    reason = "early_stop"
                    break
        except Diverged as exc:
            return self._finish("diverged", str(exc))
        except torch.cuda.OutOfMemoryError as exc:
            message = (f"CUDA out of memory at batch size {self.config.train.batch_size} (epoch "
                       f"{self.progress.epoch + 1}): try --set train.batch_size="
                       f"{max(1, self.config.train.batch_size // 2)}, or --set train.precision=bf16, "
                       "or a smaller model or image size")
            raise EngineError(message) from exc
        if reason == "interrupted":
            self.events.emit("stop_requested", source="stop file" if self.stop.by_file
                             else f"signal {self.stop.signal_number}")
            self._save("last", state=self._training_state())
            return self._finish("interrupted", self.stop.describe())
        try:
            self._test()
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory_error(exc, "testing the best checkpoint", self.config.train.eval_batch_size,
                                      "train.eval_batch_size", self.device) from exc
        return self._finish("finished", reason)

    def _train_epoch(self, epoch: int) -> bool:
        """One epoch (or its rest, when resuming mid-epoch); False when stopped by a signal."""
        parts = self.parts
        assert parts is not None
        cfg = self.config
        frozen_epochs = cfg.model.freeze_backbone_epochs
        parts.set_backbone_trainable(epoch >= frozen_epochs)
        if frozen_epochs and epoch in (0, frozen_epochs) and self.progress.step_in_epoch == 0:
            self.events.emit("backbone", epoch=epoch + 1, trainable=epoch >= frozen_epochs,
                             message=f"backbone {'trainable' if epoch else 'frozen'} from epoch {epoch + 1}"
                                     + ("" if epoch else f" to {frozen_epochs} (head only)"))
        parts.train_loader.set_epoch(epoch)
        steps = len(parts.train_loader)
        skip = self.progress.step_in_epoch
        sums = getattr(self, "partial", None) or {"loss": 0.0, "correct": 0.0, "seen": 0}
        self.partial = None
        dev_loss = torch.tensor(sums["loss"], device=self.device, dtype=torch.float64)
        dev_correct = torch.tensor(sums["correct"], device=self.device, dtype=torch.float64)
        seen = int(sums["seen"])
        # per-step values stay on the device (one copy and one in-place add); they are read once per log interval
        step_losses = torch.zeros(max(1, min(cfg.train.log_every, steps - skip)), device=self.device,
                                  dtype=torch.float64)
        log_correct = torch.zeros((), device=self.device, dtype=torch.float64)
        log_count, log_first, log_clock = 0, skip, time.perf_counter()
        self.events.emit("epoch_start", epoch=epoch + 1, epochs=cfg.train.epochs, steps=steps)
        self._epoch_clock = time.perf_counter()
        parts.model.train()
        batches = AugmentedBatches(parts.train_loader,
                                   lambda x, y: parts.augmenter.train_batch(x, y, parts.generator), skip=skip)
        accumulate = cfg.optim.accumulate
        for index, (inputs, targets) in enumerate(batches, start=skip):
            loss_sum, correct = self._train_step(inputs, targets, index)
            step_losses[index - log_first].copy_(loss_sum)
            log_correct.add_(correct)
            log_count += targets.shape[0]
            self.progress.step_in_epoch = index + 1
            last = index + 1 == steps
            at_boundary = (index + 1) % cfg.train.log_every == 0
            if at_boundary or last:
                log_loss = self._report_interval(epoch, log_first, step_losses[: index + 1 - log_first],
                                                 log_count, log_clock)
                dev_loss += log_loss
                dev_correct += log_correct
                seen += log_count
                log_correct.zero_()
                log_count, log_first, log_clock = 0, index + 1, time.perf_counter()
            # stop only between optimizer steps: a half-accumulated gradient is not in any checkpoint
            if ((index + 1) % accumulate == 0 or last) and self._should_stop(at_log_boundary=at_boundary or last):
                pending = step_losses[: index + 1 - log_first].sum()
                self.partial = {"loss": float(dev_loss + pending), "correct": float(dev_correct + log_correct),
                                "seen": seen + log_count}
                return False
        sums_all = distributed.all_sum(torch.stack([dev_loss, dev_correct,
                                                    torch.tensor(float(seen), device=self.device, dtype=torch.float64)]),
                                       self.dist)
        totals = sums_all.tolist()  # the epoch's one host sync
        seen = int(totals[2])
        self.epoch_train = {"train_loss": totals[0] / max(seen, 1), "train_acc": totals[1] / max(seen, 1),
                            "images": seen - int(sums["seen"]), "train_s": time.perf_counter() - self._epoch_clock}
        self.progress.epoch = epoch + 1
        self.progress.step_in_epoch = 0
        return True

    def _report_interval(self, epoch: int, first: int, step_losses: torch.Tensor, count: int,
                         clock: float) -> torch.Tensor:
        """Stop on a NaN/Inf loss in the interval (naming its first bad step), else emit its step event;
        returns the interval's loss sum (on the device)."""
        parts = self.parts
        assert parts is not None
        log_loss = step_losses.sum()
        if self.dist.enabled:  # every rank judges the same per-step sums over all ranks
            checked = distributed.all_sum(step_losses.clone(), self.dist)
            total = float(checked.sum())
        else:
            checked, total = step_losses, float(log_loss)
        if not math.isfinite(total):
            bad = int((~torch.isfinite(checked)).nonzero()[0, 0])
            raise Diverged(f"loss became NaN/Inf at epoch {epoch + 1}, step {first + bad + 1}")
        index = first + len(step_losses) - 1
        elapsed = time.perf_counter() - clock
        self.events.emit("step", epoch=epoch + 1, step=index + 1, global_step=self.progress.global_step,
                         loss=float(log_loss) / max(count, 1), lr=parts.schedule.lr(),
                         images_per_s=round(count / max(elapsed, 1e-9), 1))
        return log_loss

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and (every `accumulate` batches) an optimizer step; returns device sums."""
        parts = self.parts
        assert parts is not None
        accumulate = self.config.optim.accumulate
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(self.amp, self.device):
            logits = parts.model_for_step(inputs)
        loss = parts.loss(logits.float(), targets)
        parts.scaler.scale(loss / accumulate if accumulate > 1 else loss).backward()
        steps = len(parts.train_loader)
        if (index + 1) % accumulate == 0 or index + 1 == steps:
            parts.optimizer_step()
            self.progress.global_step += 1
        hard = targets if targets.dim() == 1 else targets.argmax(1)
        with torch.no_grad():
            correct = (logits.argmax(1) == hard).sum()
        return loss.detach() * targets.shape[0], correct

    # ------------------------------------------------------------------ epoch end

    def _end_epoch(self, epoch: int) -> bool:
        """Validate, step the schedule, save checkpoints, emit the epoch event; True to stop early."""
        parts = self.parts
        assert parts is not None
        cfg = self.config
        # rank 0 evaluates; every rank takes its numbers so schedules and stopping agree
        val_loss, val_acc = distributed.broadcast(
            self._evaluate(parts.val_loader) if self.dist.is_main else None, self.dist)
        train = dict(self.epoch_train)
        images, train_s = train.pop("images"), train.pop("train_s")
        metrics = {**train, "val_loss": val_loss, "val_acc": val_acc}
        old_lr = parts.schedule.lr()
        parts.schedule.step_epoch({k: v for k, v in metrics.items() if isinstance(v, float)})
        new_lr = parts.schedule.lr()
        if new_lr < old_lr * 0.95 and self.config.schedule.name in STEPPED_SCHEDULES:
            self.events.emit("lr_drop", epoch=epoch + 1, old_lr=old_lr, new_lr=new_lr)
        epoch_s = time.perf_counter() - self._epoch_clock
        row = {"epoch": epoch + 1, **metrics, "lr": old_lr, "epoch_s": round(epoch_s, 3),
               "train_s": round(train_s, 3), "images_per_s": round(images / max(train_s, 1e-9), 1),
               "gpu_mem_mb": gpu_memory_mb(self.device)}
        self.progress.history.append(row)
        improved = self._update_best(row)
        self.events.emit("epoch", **row)
        periodic = bool(cfg.train.checkpoint.every) and (epoch + 1) % cfg.train.checkpoint.every == 0
        names = ["best"] * improved + [f"epoch-{epoch + 1:03d}"] * periodic + ["last"] * cfg.train.checkpoint.last
        state = self._training_state() if names else None  # one state for all of them (collective in DDP)
        for name in names:
            self._save(name, state=state)
        if periodic and self.dist.is_main:  # rank 0 alone writes the run folder (others may not even see it)
            ckpt.prune_periodic(self.run_dir / "checkpoints", cfg.train.checkpoint.keep)
        self.record_status("running")
        return bool(distributed.broadcast(self._early_stop(row), self.dist))

    def _evaluate(self, loader: Any) -> tuple[float, float]:
        parts = self.parts
        assert parts is not None
        if loader is None:
            return float("nan"), float("nan")
        model = parts.eval_model()
        logits, labels = predict_logits(model, loader, parts.augmenter.eval_batch,
                                        amp_dtype=self.amp, channels_last=self.channels_last)
        return loss_and_accuracy(logits, labels)

    def _update_best(self, row: dict[str, Any]) -> bool:
        """Whether this epoch is the best so far (and becomes `best`). An epoch with a non-finite metric (a NaN
        validation loss beside a finite accuracy: the model's outputs are NaN) is never best."""
        policy = self.config.train.checkpoint
        value = row.get(policy.best_metric)
        if value is None or not math.isfinite(value):
            return False
        has_val = self.parts is not None and self.parts.val_loader is not None
        checked = ("train_loss", "train_acc") + (("val_loss", "val_acc") if has_val else ())
        if any(isinstance(row.get(k), float) and not math.isfinite(row[k]) for k in checked):
            bad = ", ".join(f"{k}={row[k]}" for k in checked if isinstance(row.get(k), float)
                            and not math.isfinite(row[k]))
            self.events.emit("warning", message=f"epoch {row['epoch']}: {bad}; this epoch cannot be `best`")
            return False
        best = self.progress.best_value
        better = best is None or (value > best if policy.best_mode == "max" else value < best)
        if better:
            self.progress.best_value = value
            self.progress.best_epoch = row["epoch"]
            self.progress.best_val_acc = row.get("val_acc")
        return better

    def _early_stop(self, row: dict[str, Any]) -> bool:
        rule = self.config.train.early_stop
        if rule.metric is None:
            return False
        value = row.get(rule.metric)
        if value is None or not math.isfinite(value):
            return False
        best = self.progress.early_best
        gain = (value - best) if best is not None and rule.mode == "max" else (
            (best - value) if best is not None else math.inf)
        if gain > rule.min_delta:
            self.progress.early_best, self.progress.stale_epochs = value, 0
            return False
        self.progress.stale_epochs += 1
        return self.progress.stale_epochs >= rule.patience

    # ------------------------------------------------------------------ end of run

    def _test(self) -> None:
        """Test-split metrics of the best checkpoint (else the final weights); rank 0 only."""
        parts = self.parts
        assert parts is not None
        if parts.test_loader is None or not self.dist.is_main:
            return
        source = "final"
        best_dir = self.run_dir / "checkpoints" / "best"
        loaded = None
        if best_dir.is_dir():
            try:
                loaded = ckpt.load_checkpoint(best_dir, with_state=False)
            except CheckpointError as exc:  # the run trained well: it ends finished, tested on what it has
                self.events.emit("warning", message=f"{exc}; the test split is scored with the final weights "
                                                    "instead (the run's other checkpoints are intact)")
        if loaded is not None:
            weights = loaded.ema if (loaded.ema is not None and self.config.eval.use_ema) else loaded.weights
            model = copy.deepcopy(parts.model)
            model.load_state_dict(weights)
            source = "best"
        else:
            model = parts.eval_model()
        logits, labels = predict_logits(model, parts.test_loader, parts.augmenter.eval_batch,
                                        amp_dtype=self.amp, channels_last=self.channels_last)
        loss, acc = loss_and_accuracy(logits, labels)
        self.test_metrics = {"test_loss": loss, "test_acc": acc, "test_checkpoint": source}
        self.events.emit("test", split="test", loss=loss, acc=acc, checkpoint=source)

    def _finish(self, state: str, reason: str) -> dict[str, Any]:
        self.record_status(state, reason=reason, ended=time.time())
        self.events.emit("run_end", state=state, reason=reason, epochs_done=self.progress.epoch,
                         best_val_acc=self.progress.best_val_acc, test_acc=self.status.get("test_acc"),
                         wall_s=self.status.get("wall_s"))
        return self.status

    def _save(self, name: str, *, state: dict[str, Any]) -> None:
        """Write a checkpoint with the training state from `_training_state` (on rank 0; others return)."""
        parts = self.parts
        assert parts is not None
        if not self.dist.is_main:
            return
        meta = {"epoch": self.progress.epoch, "step_in_epoch": self.progress.step_in_epoch,
                "global_step": self.progress.global_step,
                "metrics": self.progress.history[-1] if self.progress.history else {},
                "config_hash": content_hash(config_dict(self.config)), "classes": parts.classes,
                "inputs": parts.inputs, "world_size": self.dist.world_size}
        ema = parts.ema.state_dict() if parts.ema is not None else None
        path = ckpt.save_checkpoint(self.run_dir / "checkpoints", name, weights=parts.model.state_dict(),
                                    config_text=self.config_text, meta=meta, state=state, ema=ema)
        extra = {"metric": self.config.train.checkpoint.best_metric} if name == "best" else {}
        self.events.emit("checkpoint", name=name, epoch=self.progress.epoch, path=str(path), **extra)

    def _training_state(self) -> dict[str, Any]:
        parts = self.parts
        assert parts is not None
        return {
            "optimizer": parts.optimizer.state_dict(),
            "schedule": parts.schedule.state_dict(),
            "scaler": parts.scaler.state_dict() if parts.scaler.is_enabled() else {},
            "rng_ranks": distributed.gather({"rng": rng_state(self.device),
                                             "aug_generator": parts.generator.get_state()}, self.dist),
            "progress": self.progress.to_state(),
            "partial": getattr(self, "partial", None),
            "wall_s": self.wall_s(),
        }

    def wall_s(self) -> float:
        """Wall time of this run, all sessions together."""
        return round(self.wall_before + time.time() - self.started, 3)

    def _should_stop(self, *, at_log_boundary: bool) -> bool:
        """A signal asked to stop; in DDP all ranks agree at log boundaries so they stop at the same step."""
        if not self.dist.enabled:
            return self.stop.requested
        return at_log_boundary and distributed.any_rank(self.stop.requested, self.dist, self.device)

    def record_status(self, state: str, **extra: Any) -> None:
        parts = self.parts
        cfg = self.config
        last = self.progress.history[-1] if self.progress.history else {}
        self.status = {
            "state": state, "pid": os.getpid(), "host": socket.gethostname(), "name": self.run_dir.name,
            "experiment": cfg.experiment or cfg.name, "data": cfg.data.source, "model": cfg.model.name,
            "model_preset": self.model_preset, "epochs": cfg.train.epochs, "epoch": self.progress.epoch,
            "best_val_acc": self.progress.best_val_acc, "best_epoch": self.progress.best_epoch,
            "best_metric": cfg.train.checkpoint.best_metric, "best_value": self.progress.best_value,
            "final": {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in last},
            "params": parts.params if parts else None, "macs": parts.macs if parts else None,
            "device": str(self.device), "started": self.status.get("started", self.started),
            "wall_s": self.wall_s(), "parent": self.parent,
            **getattr(self, "test_metrics", {}), **extra,
        }
        if self.dist.is_main:
            write_status(self.run_dir, self.status)


def config_dict(config: ExperimentConfig) -> dict[str, Any]:
    from engine.config import to_dict

    return to_dict(config)

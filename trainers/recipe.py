"""The LoRA/QLoRA training recipe: setup → train → evaluate → cleanup.

A plain PyTorch loop (no HF Trainer): AdamW over the adapter parameters, gradient
accumulation, a warmup + cosine/linear/constant schedule, periodic evaluation and atomic
checkpoints, a tqdm progress bar with loss, tokens/s and ETA. SIGTERM stops the run at the
next optimizer step after writing a checkpoint; ``--resume`` continues bit for bit.

Under torchrun every rank runs this recipe: ``world`` (:mod:`.distributed.world`) says which
share of each step's micro-batches a rank takes (:mod:`.distributed.shard`), the model is
wrapped in DDP or FSDP2 (:mod:`.distributed.wrap`), one all_reduce per step carries loss,
tokens and the stop flag, and only rank 0 writes. With one process all of that is the identity.
Under Ray Train the recipe runs in a worker thread (no signal handlers there): ``stop_requested``
says when the driver asked the run to stop.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError

from . import batching, checkpoint, gate, loader, report
from .checkpoint import TrainerState
from .datasets.validate import Dataset
from .distributed import shard, wrap
from .distributed.world import World
from .encode import Example, encode_rows
from .job import TrainingJob
from .tracking import Tracker


@dataclass
class RecipeResult:
    state: TrainerState
    eval_loss: float | None
    gate: gate.GateResult
    total_steps: int


class Interrupted(ActionError):
    """The run received SIGTERM/SIGINT and stopped after writing a checkpoint."""


def set_seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class LoraRecipe:
    def __init__(
        self,
        job: TrainingJob,
        dataset: Dataset,
        run_dir: Path,
        *,
        resume: bool = False,
        show_progress: bool = True,
        world: World | None = None,
        stop_requested: Callable[[], int | None] | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.world = world or World()
        self.tracker = tracker or Tracker()  # live metrics (rank 0's; the others' is a no-op)
        self._grad_norm: Any = None  # of the last optimizer step, a tensor until logged
        self.stop_requested = stop_requested  # polled by rank 0 before each step: a signal number asks to stop
        self.job = job
        self.cfg = job.config
        self.dataset = dataset
        self.run_dir = run_dir
        self.resume = resume
        self.show_progress = show_progress and self.world.is_main
        self._stop_signal: int | None = None

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if not self.show_progress:
            hf_logging.disable_progress_bar()
        threads = os.environ.get("VILMS_TORCH_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        cfg, t = self.cfg, self.cfg.training
        set_seed(t.seed)
        self.source = loader.resolve_source(cfg.base_model, self.job.root)
        self.tokenizer = loader.load_tokenizer(self.source, cfg.base_model.chat_template)
        train_rows, eval_rows = batching.split_rows(self.dataset.rows, cfg.dataset.eval_fraction, t.seed)
        self.train_examples: list[Example] = encode_rows(self.tokenizer, train_rows, cfg.dataset.format, t.seq_len)
        self.eval_examples: list[Example] = encode_rows(self.tokenizer, eval_rows, cfg.dataset.format, t.seq_len)
        if not self.train_examples:
            raise ActionError(
                "no training example has a token to learn from after templating and truncation",
                hint="check training.seq_len and that rows have assistant/completion text",
            )
        self.micro_per_epoch = batching.micro_batches_per_epoch(len(self.train_examples), t.batch_size)
        steps_per_epoch = math.ceil(self.micro_per_epoch / (t.gradient_accumulation_steps * self.world.size))
        self.total_steps = t.max_steps or t.epochs * steps_per_epoch

        self.model = self._build_model()
        self.device = next(p for p in self.model.parameters()).device
        if self.world.rank > 0:  # dropout masks differ per rank (rank 0 draws what one process would)
            set_seed(t.seed + self.world.rank)
        self.forward_model = wrap.wrap(self.model, cfg.distributed.strategy, self.world)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=t.learning_rate, weight_decay=t.weight_decay)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            t.lr_scheduler,
            self.optimizer,
            num_warmup_steps=math.ceil(t.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.state = TrainerState()
        self._order: list[int] = []
        self._order_epoch = -1
        latest = checkpoint.latest_checkpoint(self.run_dir) if self.resume else None
        if latest is not None and self.world.size > 1:
            self.state = checkpoint.load_distributed(latest, self.model, self.optimizer, self.scheduler, self.world)
        elif latest is not None:
            self.state = checkpoint.load_checkpoint(latest, self.model, self.optimizer, self.scheduler)

    def _build_model(self) -> Any:
        from peft import get_peft_model, prepare_model_for_kbit_training

        cfg, t = self.cfg, self.cfg.training
        quant = cfg.quantization if cfg.method == "qlora" else None
        model = loader.load_base_model(self.source, quant)
        model.config.use_cache = False
        if quant is not None:
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=t.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif t.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        set_seed(t.seed)  # LoRA A init draws from the global RNG: seed right before creating the adapter
        model = get_peft_model(model, loader.peft_config(cfg.lora))
        model.train()
        return model

    # ---------------------------------------------------------------- train
    def train(self) -> None:
        from tqdm import tqdm

        t = self.cfg.training
        state = self.state
        in_main = threading.current_thread() is threading.main_thread()  # Ray Train runs the loop in a thread
        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
        bar = tqdm(
            total=self.total_steps,
            initial=state.step,
            unit="step",
            dynamic_ncols=True,
            mininterval=0.5,
            disable=not self.show_progress,
            desc=self.cfg.adapter,
        )
        window_tokens = 0
        window_seconds = 0.0
        try:
            while state.step < self.total_steps:
                started = time.perf_counter()
                carried = 0.0
                self.world.beat(state.step)
                if self.stop_requested is not None and self.world.is_main and self._stop_signal is None:
                    self._stop_signal = self.stop_requested()
                loss, tokens, stop_signal = self._optimizer_step()
                state.tokens_seen += tokens
                window_tokens += tokens
                state.train_history.append([state.step, loss, self.scheduler.get_last_lr()[0]])
                if state.step % t.eval_steps == 0 and state.step < self.total_steps and self.eval_examples:
                    state.eval_history.append([state.step, self.evaluate()])
                    self.tracker.evaluated(state.step, state.eval_history[-1][1])
                stopping = stop_signal is not None
                if (state.step % t.save_steps == 0 and state.step < self.total_steps) or stopping:
                    state.peak_rss_bytes = max(state.peak_rss_bytes, report.peak_rss_bytes())
                    carried = time.perf_counter() - started  # the checkpoint records time up to here
                    state.elapsed_seconds += carried
                    started = time.perf_counter()
                    self._save_checkpoint()
                seconds = time.perf_counter() - started
                state.elapsed_seconds += seconds
                state.step_seconds.append(round(carried + seconds, 6))
                window_seconds += carried + seconds
                bar.update(1)
                if state.step % t.logging_steps == 0 or state.step == self.total_steps:
                    state.peak_rss_bytes = max(state.peak_rss_bytes, report.peak_rss_bytes())
                    tokens_per_second = window_tokens / max(window_seconds, 1e-9)
                    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_second:.0f}", refresh=False)
                    self.tracker.step(state.step, self._logged_values(loss, tokens_per_second))
                    window_tokens, window_seconds = 0, 0.0
                if stopping:
                    name = signal.Signals(stop_signal).name if stop_signal else "a signal on another rank"
                    raise Interrupted(
                        f"training stopped by {name} at step {state.step}/{self.total_steps}; checkpoint written",
                        hint=f"continue with `vilms train {self.cfg.adapter} --resume`",
                    )
        finally:
            bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        state.peak_rss_bytes = max(state.peak_rss_bytes, report.peak_rss_bytes())

    def _logged_values(self, loss: float, tokens_per_second: float) -> dict[str, float]:
        """A logged step's metrics by their MLflow keys (facts.telemetry.TRAINER)."""
        import torch

        norm = self._grad_norm
        values = {
            "train_loss": loss,
            "learning_rate": self.state.train_history[-1][2],
            "grad_norm": float(norm) if norm is not None else None,
            "tokens_per_second": tokens_per_second,
            "peak_rss_bytes": float(self.state.peak_rss_bytes),
        }
        if getattr(self.device, "type", "cpu") == "cuda":
            values["gpu_peak_memory_bytes"] = float(torch.cuda.max_memory_allocated(self.device))
        return {k: v for k, v in values.items() if v is not None}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _optimizer_step(self) -> tuple[float, int, int | None]:
        """One optimizer step over the global batch; (mean loss, tokens, stop signal) over all ranks."""
        import torch

        t, state, world = self.cfg.training, self.state, self.world
        if self._order_epoch != state.epoch:
            self._order = batching.epoch_order(len(self.train_examples), t.seed, state.epoch)
            self._order_epoch = state.epoch
        n_micro = shard.step_size(state.micro_index, self.micro_per_epoch, t.gradient_accumulation_steps, world.size)
        mine = shard.my_micro_batches(state.micro_index, n_micro, world.rank, world.size)
        total_loss = 0.0
        tokens = 0
        for round_, micro in enumerate(mine):
            batch = batching.batch_for(
                self.train_examples, self._order, state.micro_index if micro is None else micro, t.batch_size,
                self.tokenizer.pad_token_id,
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with wrap.gradient_sync(self.forward_model, self.model, round_ == len(mine) - 1):
                loss = self.forward_model(**batch).loss
                # ranks average gradients: × world makes the global step the mean over its micro-batches
                scaled = loss * world.size / n_micro if micro is not None else loss * 0.0
                scaled.backward()
            if micro is not None:
                total_loss += float((loss / n_micro).detach())
                tokens += int(batch["attention_mask"].sum())
        state.micro_index += n_micro
        norm = torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self._grad_norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: on every rank
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        if state.micro_index >= self.micro_per_epoch:
            state.epoch += 1
            state.micro_index = 0
        if world.size == 1:
            return total_loss, tokens, self._stop_signal
        stopped = self._stop_signal is not None
        total_loss, total_tokens, n_stopped, signals = world.sum(
            [total_loss, tokens, float(stopped), float(self._stop_signal or 0)]
        )
        if not n_stopped:
            return total_loss, int(total_tokens), None
        return total_loss, int(total_tokens), self._stop_signal or (round(signals / n_stopped) or None)

    def _save_checkpoint(self) -> None:
        if self.world.size == 1:
            checkpoint.save_checkpoint(self.run_dir, self.model, self.optimizer, self.scheduler, self.state)
        else:
            checkpoint.save_distributed(self.run_dir, self.model, self.optimizer, self.scheduler, self.state, self.world)

    # ---------------------------------------------------------------- evaluate
    def evaluate(self) -> float | None:
        """Mean token loss on the held-out split (assistant/completion tokens only)."""
        import torch

        if not self.eval_examples:
            return None
        t, world = self.cfg.training, self.world
        self.model.eval()
        loss_sum = 0.0
        count = 0
        with torch.no_grad():
            for start in shard.my_eval_batches(len(self.eval_examples), t.batch_size, world.rank, world.size):
                first = 0 if start is None else start
                batch = batching.collate(self.eval_examples[first : first + t.batch_size], self.tokenizer.pad_token_id)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                n = int((batch["labels"][:, 1:] != -100).sum()) if start is not None else 0
                if n == 0 and world.size == 1:
                    continue
                loss = float(self.model(**batch).loss)  # every rank runs as many passes (FSDP gathers in each)
                if n:
                    loss_sum += loss * n
                    count += n
        self.model.train()
        loss_sum, count = world.sum([loss_sum, count])
        return loss_sum / count if count else None

    def run_gate(self) -> tuple[float | None, gate.GateResult]:
        eval_loss = self.evaluate()
        if self.world.size > 1 and self.cfg.distributed.strategy == "fsdp":  # every rank generates, in step
            regression = gate.run_regression(self.model, self.tokenizer, self.cfg.gate, synced=True)
        else:  # one process, or DDP: rank 0 generates on the unwrapped model while the others wait
            regression = self.world.main_only(gate.run_regression, self.model, self.tokenizer, self.cfg.gate) or []
            self.world.barrier()
        return eval_loss, gate.decide(self.cfg.gate, eval_loss, regression)

    # ---------------------------------------------------------------- cleanup
    def save_adapter(self) -> Path:
        from .atomic import atomic_directory

        target = self.run_dir / "adapter"
        weights = checkpoint.gathered_trainable_state(self.model) if self.world.size > 1 else None

        def write() -> None:
            with atomic_directory(target) as tmp:
                self.model.save_pretrained(str(tmp), **({"state_dict": weights} if weights is not None else {}))
                self.tokenizer.save_pretrained(str(tmp))

        self.world.main_only(write)
        self.world.barrier()
        return target

    def run(self) -> RecipeResult:
        self.setup()
        self.train()
        eval_loss, result = self.run_gate()
        self.tracker.evaluated(self.state.step, eval_loss)
        self.save_adapter()
        return RecipeResult(state=self.state, eval_loss=eval_loss, gate=result, total_steps=self.total_steps)

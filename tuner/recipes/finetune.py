"""The fine-tuning recipe behind `tuner train`: setup -> main -> fit, top to bottom.

One recipe serves every method (full, lora, qlora, llama_adapter); they differ only in how the
model is prepared before DeepSpeed wraps it and in what the final folder holds. Runs alone or one
process per rank under the `deepspeed` launcher (launch/train.sh, launch/train_multinode.sh).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tuner import checkpoint as ckpt
from tuner import engine as ds
from tuner.adapters import adapter_method
from tuner.config import ConfigError, to_dict
from tuner.data.batching import StepPlan, attention_inputs, collate, token_losses
from tuner.data.examples import Example, load_examples
from tuner.metrics import MetricsLogger, plot_loss
from tuner.models import TORCH_DTYPES, count_parameters, load_model, load_tokenizer, resolve_attn_implementation
from tuner.recipes.args import RecipeConfig

logger = logging.getLogger("tuner.train")


@dataclass
class Runtime:
    """What `setup` builds and `fit` uses."""

    config: RecipeConfig
    dist: ds.DistInfo
    output_dir: Path
    tokenizer: object
    examples: list[Example]
    plan: StepPlan
    engine: object
    attn_implementation: str
    start_step: int
    plan_fingerprint: str


# --- setup ----------------------------------------------------------------------------------------


def _log(info: ds.DistInfo, message: str, *args) -> None:
    if info.is_main:
        logger.info(message, *args)


def plan_fingerprint(plan: StepPlan, examples: list[Example]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([plan.total_steps, plan.rows_per_step, len(examples)]).encode())
    for example in examples:
        digest.update(bytes(str(example.input_ids[:64]), "utf-8"))
    return digest.hexdigest()[:16]


def warmup_steps(config: RecipeConfig, plan: StepPlan) -> int:
    train = config.train
    if train.warmup_steps is not None:
        return train.warmup_steps
    if train.warmup_ratio is not None:
        return int(train.warmup_ratio * plan.total_steps)
    if train.warmup_epochs is not None:
        return int(train.warmup_epochs * plan.steps_per_epoch)
    return 0


def prepare_model(config: RecipeConfig, tokenizer, attn_implementation: str):
    """Load the base model and make the parameters of `train.method` the trainable ones."""
    method, model_args = config.train.method, config.model
    model = load_model(model_args.path, dtype=model_args.dtype, attn_implementation=attn_implementation,
                       quantized=method != "full" and adapter_method(method).quantized_base)
    if tokenizer.needs_resize:
        if method != "full":
            raise ConfigError(f"model.path: the tokenizer has no pad token distinct from EOS; train.method "
                              f"{method!r} cannot grow the vocabulary: add a pad token to the tokenizer first")
        model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    if method == "full":
        if model_args.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    return adapter_method(method).add(model, config.method_options(), model_args.gradient_checkpointing)


def setup(config: RecipeConfig) -> Runtime:
    info = ds.init_distributed()
    torch.manual_seed(config.train.seed)
    output_dir = Path(config.train.output_dir)
    if info.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    resume_from = find_resume_point(config, output_dir)

    tokenizer = load_tokenizer(config.model.tokenizer_path or config.model.path)
    data = config.data
    examples, report = load_examples(data.paths, tokenizer, fmt=data.format, template=data.template,
                                     max_length=data.max_length, on_overlong=data.on_overlong,
                                     max_examples=data.max_examples)
    _log(info, "data: %s", report.summary())
    if info.is_main:  # the tokenizer as trained with (pad token included), for `tuner export`
        tokenizer.save_pretrained(output_dir / "tokenizer")
    train = config.train
    plan = StepPlan(examples, train.micro_batch_size, train.gradient_accumulation_steps, info.world_size,
                    data.packing, data.max_length, train.seed, train.epochs, train.max_steps)
    _log(info, "plan: %d optimizer steps of %d rows (%d per epoch; %d rows dropped to fill whole steps)",
         plan.total_steps, plan.rows_per_step, plan.steps_per_epoch, plan.dropped_rows)
    if info.is_main:
        (output_dir / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2))

    ds_raw = ds.load_deepspeed_config(config.deepspeed.config)
    ds_config = ds.resolve_deepspeed_config(
        ds_raw, micro_batch_size=train.micro_batch_size, accumulation=train.gradient_accumulation_steps,
        world_size=info.world_size, max_grad_norm=train.max_grad_norm, dtype=config.model.dtype,
        source=config.deepspeed.config or "deepspeed.config")
    attn = resolve_attn_implementation(config.model.attn_implementation)
    keep_alive = None
    if ds.zero_stage(ds_config) == 3 and train.method == "full":
        # Tells from_pretrained to load straight into ZeRO-3 partitions (no full copy per rank).
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)  # noqa: F841 (must stay referenced while loading)
    model = prepare_model(config, tokenizer, attn)
    trainable, total = count_parameters(model)
    _log(info, "model: %s parameters, %s trainable (%.4f%%), attention: %s", f"{total:,}", f"{trainable:,}",
         100 * trainable / max(total, 1), attn)

    global_batch = plan.rows_per_step
    peak_lr = train.lr * (global_batch / train.lr_base_batch_size if train.lr_scaling == "linear" else 1.0)
    lr_lambda = ds.warmup_cosine(warmup_steps(config, plan), plan.total_steps, train.min_lr / train.lr)
    engine = ds.build_engine(model, ds_config, lr=peak_lr, betas=train.adam_betas, eps=train.adam_eps,
                               weight_decay=train.weight_decay, lr_lambda=lr_lambda)
    del keep_alive

    start_step = 0
    fingerprint = plan_fingerprint(plan, examples)
    if resume_from is not None:
        progress = ckpt.load_checkpoint(engine, resume_from, info.rank, exclude_frozen=train.method != "full")
        if progress.plan_fingerprint != fingerprint:
            raise ConfigError(f"{resume_from}: this checkpoint was made with different data or batch settings; "
                              "use a new train.output_dir or train.resume=never")
        start_step = progress.step
        _log(info, "resumed from %s at step %d", resume_from, start_step)
    return Runtime(config, info, output_dir, tokenizer, examples, plan, engine, attn, start_step,
                   fingerprint)


def find_resume_point(config: RecipeConfig, output_dir: Path) -> Path | None:
    resume = config.train.resume
    existing = ckpt.complete_checkpoints(output_dir)
    if resume == "never":
        if existing:
            raise ConfigError(f"train.resume: never, but {output_dir} already holds checkpoints; "
                              "use a new train.output_dir or train.resume=auto")
        return None
    if resume == "auto":
        return existing[-1] if existing else None
    path = Path(resume)
    if not (path / ckpt.COMPLETE_MARKER).exists():
        raise ConfigError(f"train.resume: {path} is not a complete checkpoint folder")
    return path


# --- fit ------------------------------------------------------------------------------------------


def micro_batch_loss(model, batch: dict, attn_implementation: str, dtype: torch.dtype,
                     step_loss_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(this micro-batch's share of the step loss, its summed token loss).

    The share is the micro-batch's summed cross-entropy divided by the number of loss tokens in
    the *whole* optimizer step, so the micro-batch shares add up to the mean over the step's
    response tokens however they are split across micro-batches and ranks.
    """
    device = ds.device()
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    inputs = attention_inputs(batch, attn_implementation, dtype)  # masks are built on the device
    outputs = model(input_ids=batch["input_ids"], **inputs, use_cache=False)
    loss_sum = token_losses(outputs.logits, batch["targets"]).sum()
    return loss_sum / step_loss_tokens, loss_sum.detach()


def gradient_norm(model: torch.nn.Module) -> float:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def fit(rt: Runtime) -> None:
    from tqdm import tqdm

    config, engine, plan, info = rt.config, rt.engine, rt.plan, rt.dist
    dtype = TORCH_DTYPES[config.model.dtype]
    train = config.train
    exclude_frozen = train.method != "full"
    metrics = MetricsLogger(rt.output_dir, resume_step=rt.start_step) if info.is_main else None
    bar = tqdm(total=plan.total_steps, initial=rt.start_step, disable=not info.is_main, desc="train",
               dynamic_ncols=True)
    # DeepSpeed reports the gradient norm except for plain fp32 training without ZeRO, where the
    # full gradients sit on the parameters and the norm is cheap to take before the step.
    manual_grad_norm = engine.zero_optimization_stage() == 0 and dtype == torch.float32
    grad_monitor = None
    if config.diagnostics.grad_monitor_enabled:
        from tuner.diagnostics.grad_health import GradientHealthMonitor

        grad_monitor = GradientHealthMonitor(engine, config.diagnostics, rt.output_dir, rank=info.rank,
                                             world_size=info.world_size, resume_step=rt.start_step)
    engine.train()
    for step in range(rt.start_step, plan.total_steps):
        started = time.perf_counter()
        lr = engine.lr_scheduler.get_last_lr()[0]
        work = plan.for_rank(step, info.rank)
        loss_sum = 0.0  # a tensor after the first micro-batch; read once per step (one device sync)
        tokens = 0
        grad_norm = None
        for micro, rows in enumerate(work.micro_batches):
            batch = collate(rt.examples, rows, rt.tokenizer.pad_token_id)
            share, summed = micro_batch_loss(engine, batch, rt.attn_implementation, dtype, work.step_loss_tokens)
            # DeepSpeed averages gradients over data-parallel ranks; undo that so the step's
            # gradient is that of the summed shares, and skip its 1/accumulation scaling.
            engine.backward(share * info.world_size, scale_wrt_gas=False)
            if micro == len(work.micro_batches) - 1 and manual_grad_norm:
                grad_norm = gradient_norm(engine.module)
            if micro == len(work.micro_batches) - 1 and grad_monitor is not None:
                grad_monitor.on_gradients(step + 1)  # the reduced gradients exist only until engine.step()
            engine.step()
            loss_sum = loss_sum + summed
            tokens += batch["num_tokens"]
        if grad_monitor is not None:
            grad_monitor.on_step_end(step + 1)
        loss_sum, tokens = ds.all_reduce_sum([float(loss_sum), tokens])
        elapsed = time.perf_counter() - started
        done = step + 1
        loss = loss_sum / work.step_loss_tokens
        grad_norm = engine.get_global_grad_norm() if grad_norm is None else grad_norm
        if info.is_main:
            bar.update(1)
            bar.set_postfix(epoch=f"{plan.epoch_of_step[step]:.2f}", loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if done % train.log_every_n_steps == 0 or done == plan.total_steps:
                metrics.log(done, {"epoch": round(plan.epoch_of_step[step], 4), "loss": loss, "lr": lr,
                                   "grad_norm": float(grad_norm) if grad_norm is not None else None,
                                   "tokens": int(tokens), "tokens_per_s": tokens / elapsed,
                                   "step_time_s": elapsed})
        if (train.save_every_n_steps and done % train.save_every_n_steps == 0) or done == plan.total_steps:
            progress = ckpt.TrainingProgress(done, plan.epoch_of_step[step], rt.plan_fingerprint)
            ckpt.save_checkpoint(engine, rt.output_dir, progress, info.rank, exclude_frozen,
                                 train.keep_last_n_checkpoints)
    bar.close()
    if metrics is not None:
        metrics.close()
    if grad_monitor is not None and (written := grad_monitor.close()):
        print(f"gradient health: {written['summary']}" + (f", heat map {written['heatmap']}" if "heatmap" in written else ""))


# --- final save -----------------------------------------------------------------------------------


def save_final(rt: Runtime) -> Path:
    """Write `output_dir/final`: a plain HF folder (full), a peft adapter folder (lora/qlora) or the
    adapter method's own folder, each with the tokenizer. Every rank must call this (ZeRO-3 gathers)."""
    out = rt.output_dir / "final"
    method = rt.config.train.method
    model = rt.engine.module
    if method == "full":
        state_dict = ds.full_state_dict(rt.engine)
        if rt.dist.is_main:
            model.config.use_cache = True
            model.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    else:
        adapter_method(method).save(model, out)  # collective under ZeRO-3; rank 0 writes
    if rt.dist.is_main:
        rt.tokenizer.save_pretrained(out)
        (out / "training_config.yaml").write_text(yaml.safe_dump(to_dict(rt.config), sort_keys=False))
    ds.barrier()
    return out


def main(config: RecipeConfig) -> Path:
    """Run the recipe; returns the final folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rt = setup(config)
    fit(rt)
    final = save_final(rt)
    if rt.dist.is_main:
        metrics_path = rt.output_dir / "metrics.jsonl"
        if metrics_path.exists() and metrics_path.read_text().strip():
            plot = plot_loss(metrics_path, rt.output_dir / "loss.png", title=f"{config.train.method} fine-tuning")
            print(f"metrics: {metrics_path}\nloss curve: {plot}")
        print(f"final model: {final}")
    return final

"""Deterministic data order, sample packing and collation.

The whole run's data order is a pure function of (examples, seed, batch geometry): every rank
builds the same `StepPlan` and takes its own share, so resuming needs only the step number, and
each rank knows the number of loss tokens in the *whole* optimizer step without communicating.
That count is what the loss is divided by, which makes gradient accumulation and data parallelism
give the same update as one big batch.

Packing puts several examples into one row of at most `max_length` tokens (best-fit). Rows carry
segment ids; `attention_inputs` turns them into what the attention implementation needs so that no
example attends to another: restarted position ids for flash-attention's varlen kernels, plus an
explicit block-diagonal causal mask for SDPA and eager attention (position ids alone leak there).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

import torch

from tuner.data.examples import IGNORE_INDEX, Example

Row = list[int]
"""Indices of the examples placed in one row, in order."""


def pack_rows(lengths: list[int], order: list[int], max_length: int) -> list[Row]:
    """Best-fit packing of examples (visited in `order`) into rows of at most `max_length` tokens."""
    rows: list[Row] = []
    free: list[tuple[int, int]] = []  # sorted (free space, row index)
    for index in order:
        length = lengths[index]
        slot = bisect.bisect_left(free, (length, -1))
        if slot < len(free):
            space, row = free.pop(slot)
            rows[row].append(index)
            bisect.insort(free, (space - length, row))
        else:
            rows.append([index])
            bisect.insort(free, (max_length - length, len(rows) - 1))
    return rows


def epoch_rows(lengths: list[int], epoch: int, seed: int, packing: bool, max_length: int) -> list[Row]:
    """The rows of one epoch, in training order."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not packing:
        return [[i] for i in order]
    rows = pack_rows(lengths, order, max_length)
    rng.shuffle(rows)
    return rows


@dataclass
class StepBatch:
    """The micro-batches one rank runs in one optimizer step, and the step's global loss-token count."""

    micro_batches: list[list[Row]]
    step_loss_tokens: int


class StepPlan:
    """The data order of a whole run, shared by all ranks.

    Each optimizer step consumes `micro_batch_size * gradient_accumulation_steps * world_size`
    rows; an epoch's rows that do not fill a whole step are dropped (and counted).
    """

    def __init__(self, examples: list[Example], micro_batch_size: int, gradient_accumulation_steps: int,
                 world_size: int, packing: bool, max_length: int, seed: int, epochs: float,
                 max_steps: int | None = None):
        self.examples = examples
        self.micro_batch_size = micro_batch_size
        self.accumulation = gradient_accumulation_steps
        self.world_size = world_size
        self.rows_per_step = micro_batch_size * gradient_accumulation_steps * world_size
        lengths = [len(e.input_ids) for e in examples]
        self.steps: list[list[Row]] = []  # per step, all of its rows
        self.epoch_of_step: list[float] = []
        self.dropped_rows = 0
        self._loss_tokens = [e.num_loss_tokens for e in examples]
        whole_epochs = math.ceil(epochs) if max_steps is None else None
        epoch = 0
        while True:
            rows = epoch_rows(lengths, epoch, seed, packing, max_length)
            steps_here = len(rows) // self.rows_per_step
            if steps_here == 0:
                raise ValueError(
                    f"one optimizer step needs {self.rows_per_step} rows (micro_batch_size x "
                    f"gradient_accumulation_steps x world_size) but the data gives {len(rows)} per epoch")
            if epoch == 0:
                self.steps_per_epoch = steps_here
            if max_steps is None and epoch == whole_epochs - 1 and epochs != whole_epochs:
                steps_here = max(1, int(steps_here * (epochs - epoch)))
            self.dropped_rows += len(rows) - steps_here * self.rows_per_step
            for s in range(steps_here):
                self.steps.append(rows[s * self.rows_per_step:(s + 1) * self.rows_per_step])
                self.epoch_of_step.append(epoch + (s + 1) / steps_here)
                if max_steps is not None and len(self.steps) == max_steps:
                    return
            epoch += 1
            if max_steps is None and epoch >= whole_epochs:
                return

    @property
    def total_steps(self) -> int:
        return len(self.steps)

    def for_rank(self, step: int, rank: int) -> StepBatch:
        """The micro-batches of rank `rank` in optimizer step `step` (0-based)."""
        rows = self.steps[step]
        count = sum(self._loss_tokens[i] for row in rows for i in row)
        micro = []
        for m in range(self.accumulation):
            start = (m * self.world_size + rank) * self.micro_batch_size
            micro.append(rows[start:start + self.micro_batch_size])
        return StepBatch(micro, count)


def collate(examples: list[Example], rows: list[Row], pad_token_id: int, pad_to_multiple_of: int = 8) -> dict:
    """Pad rows of (possibly packed) examples into tensors.

    Returns input_ids, targets (the label of the *next* token at each position, -100 where no loss,
    never crossing an example boundary), position_ids (restarting per example), segment_ids
    (example number within the row; padding gets its own segment) and num_loss_tokens.
    """
    lengths = [sum(len(examples[i].input_ids) for i in row) for row in rows]
    width = max(lengths)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    targets = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((batch, width), dtype=torch.long)
    segment_ids = torch.zeros((batch, width), dtype=torch.long)
    for b, row in enumerate(rows):
        cursor = 0
        for segment, index in enumerate(row):
            example = examples[index]
            n = len(example.input_ids)
            input_ids[b, cursor:cursor + n] = torch.tensor(example.input_ids)
            targets[b, cursor:cursor + n - 1] = torch.tensor(example.labels[1:])
            position_ids[b, cursor:cursor + n] = torch.arange(n)
            segment_ids[b, cursor:cursor + n] = segment
            cursor += n
        if cursor < width:
            position_ids[b, cursor:] = torch.arange(width - cursor)
            segment_ids[b, cursor:] = len(row)
    return {
        "input_ids": input_ids,
        "targets": targets,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "num_loss_tokens": int((targets != IGNORE_INDEX).sum()),
        "num_tokens": sum(lengths),
        "packed": any(len(row) > 1 for row in rows),
    }


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] boolean mask: True where query i may attend key j (same segment, j <= i)."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    return (same & causal)[:, None]


def attention_inputs(batch: dict, attn_implementation: str, dtype: torch.dtype) -> dict:
    """The attention-related model inputs for a collated batch.

    flash_attention_2 gets restarted position ids only (its varlen path splits on them). SDPA gets
    a boolean block-diagonal causal mask, eager an additive float one. Unpacked batches get the
    usual 2D padding mask, which lets the attention kernels use their causal fast paths.
    """
    segment_ids = batch["segment_ids"]
    if attn_implementation == "flash_attention_2":
        return {"position_ids": batch["position_ids"]}
    if not batch["packed"]:
        return {"attention_mask": (segment_ids == 0).long(), "position_ids": batch["position_ids"]}
    mask = block_causal_mask(segment_ids)
    if attn_implementation == "eager":
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        mask = additive.masked_fill(~mask, torch.finfo(dtype).min)
    return {"attention_mask": mask, "position_ids": batch["position_ids"]}


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy in fp32 (0 where the target is -100)."""
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none",
    ).view(targets.shape)

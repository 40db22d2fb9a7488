"""Adapter placement search: which decoder layers get LLaMA-Adapter adaption prompts, and which are
fine-tuned outright, under a budget of trainable parameters.

Following the NAS view of few-shot adaptation (search the adaptation architecture on a validation
split, with cheap partial training to rank candidates), each candidate `Placement` is a set of
prompt layers plus a (usually empty) set of fully fine-tuned layers; everything else stays frozen.
Candidates whose trainable parameters exceed the budget are never built. Successive halving
(Jamieson & Talwalkar, 2016) trains every candidate for `min_steps`, keeps the best 1/eta by
validation loss, trains the survivors on to eta times as many steps, and repeats until one is left.
Survivors continue from their own weights and optimizer state, and every candidate sees the same
batches at the same step, so the rungs compare like with like.

The task is prompt-based classification (fewshot.py): cross-entropy over the label words at the
answer position; the validation curve records loss and accuracy of every candidate at every rung
it reached.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tuner.diagnostics.fewshot import FewShotTask, collate, evaluate, label_logits


@dataclass(frozen=True, order=True)
class Placement:
    prompt_layers: tuple[int, ...] = ()
    """Decoder layers (0 = nearest the embeddings) that get adaption prompts and gates."""
    tuned_layers: tuple[int, ...] = ()
    """Decoder layers whose own weights are all fine-tuned."""

    @property
    def name(self) -> str:
        parts = []
        if self.prompt_layers:
            parts.append("p" + ",".join(map(str, self.prompt_layers)))
        if self.tuned_layers:
            parts.append("t" + ",".join(map(str, self.tuned_layers)))
        return "+".join(parts) or "frozen"

    @classmethod
    def parse(cls, text: str) -> "Placement":
        """`p1,2` (prompts in layers 1 and 2), `t3` (layer 3 fine-tuned) or both: `p1,2+t3`."""
        prompts: tuple[int, ...] = ()
        tuned: tuple[int, ...] = ()
        for part in text.strip().split("+"):
            kind, numbers = part.strip()[:1], part.strip()[1:]
            try:
                layers = tuple(sorted({int(v) for v in numbers.split(",") if v.strip()}))
            except ValueError:
                layers = ()
            if kind not in ("p", "t") or not layers:
                raise ValueError(f"placement {text!r}: expected e.g. p1,2 or t3 or p1,2+t3")
            if kind == "p":
                prompts = layers
            else:
                tuned = layers
        return cls(prompts, tuned)


@dataclass
class SearchConfig:
    budget: int
    """Most trainable parameters a candidate may have."""
    adapter_len: int = 10
    """Prompt vectors per adapted layer (LLaMA-Adapter's K)."""
    prompt_init_std: float = 1.0
    gate: str = "tanh_per_head"
    min_steps: int = 20
    """Training steps of every candidate in the first rung."""
    eta: int = 2
    """Keep the best 1/eta of the candidates per rung; survivors train eta times as long."""
    max_candidates: int = 16
    search_tuned_layers: bool = True
    """Also consider fine-tuning whole layers (when they fit the budget)."""
    candidates: list[Placement] | None = None
    """Explicit candidates instead of the generated ones."""
    lr: float = 1e-2
    """Learning rate of prompts and gates (AdamW, no weight decay)."""
    layer_lr: float = 1e-4
    """Learning rate of fine-tuned layers."""
    batch_size: int = 16
    seed: int = 0
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be a positive number of parameters, got {self.budget}")
        if self.eta < 2 or self.min_steps < 1 or self.max_candidates < 1:
            raise ValueError("eta must be >= 2, min_steps and max_candidates >= 1")


@dataclass
class CandidateResult:
    placement: str
    prompt_layers: list[int]
    tuned_layers: list[int]
    trainable_params: int
    curve: list[dict] = field(default_factory=list)
    """One {steps, val_loss, val_accuracy} per rung the candidate reached."""
    eliminated_after_steps: int | None = None


@dataclass
class SearchReport:
    chosen: str
    chosen_prompt_layers: list[int]
    chosen_tuned_layers: list[int]
    budget: int
    rungs: list[dict]
    """Per rung: steps trained by then and the candidates still in it."""
    candidates: list[CandidateResult]
    total_training_steps: int
    config: dict

    def to_dict(self) -> dict:
        return asdict(self)


# --- the search space -----------------------------------------------------------------------------


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder layers, found through its LLaMA-Adapter layout."""
    from tuner.adapters.llama_adapter.arch import decoder_layers, layout_for

    return decoder_layers(model, layout_for(model.config))


def prompt_layer_cost(model: nn.Module, adapter_len: int, gate: str) -> int:
    """Trainable parameters one adapted layer adds: adapter_len x hidden prompts plus its gate."""
    config = model.config
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    return adapter_len * config.hidden_size + (heads if gate == "tanh_per_head" else 1)


def placement_cost(model: nn.Module, placement: Placement, adapter_len: int, gate: str) -> int:
    layers = decoder_layers(model)
    tuned = sum(p.numel() for i in placement.tuned_layers for p in layers[i].parameters())
    return len(placement.prompt_layers) * prompt_layer_cost(model, adapter_len, gate) + tuned


def candidate_placements(model: nn.Module, config: SearchConfig) -> list[Placement]:
    """The candidates: explicit ones, or prompt layer sets (single layers, top-k and bottom-k
    blocks, every other layer) optionally combined with one fine-tuned layer, within budget.

    Raises:
        ValueError: no candidate fits the budget, or an explicit one names a missing layer.
    """
    num_layers = len(decoder_layers(model))
    if config.candidates is not None:
        chosen = list(dict.fromkeys(config.candidates))
        for placement in chosen:
            bad = [i for i in placement.prompt_layers + placement.tuned_layers if not 0 <= i < num_layers]
            if bad:
                raise ValueError(f"placement {placement.name}: layers {bad} do not exist (the model has {num_layers})")
    else:
        prompt_sets = [(i,) for i in range(num_layers)]
        prompt_sets += [tuple(range(num_layers - k, num_layers)) for k in range(2, num_layers + 1)]
        prompt_sets += [tuple(range(k)) for k in range(2, num_layers)]
        prompt_sets += [tuple(range(start, num_layers, 2)) for start in (0, 1)]
        tuned_sets = [()] + ([(i,) for i in range(num_layers)] if config.search_tuned_layers else [])
        chosen = list(dict.fromkeys(Placement(p, t) for t in tuned_sets for p in [()] + prompt_sets if p or t))
    fitting = [p for p in chosen if placement_cost(model, p, config.adapter_len, config.gate) <= config.budget]
    if not fitting:
        cheapest = min(placement_cost(model, p, config.adapter_len, config.gate) for p in chosen)
        raise ValueError(f"no candidate placement fits the budget of {config.budget} parameters "
                         f"(the cheapest needs {cheapest})")
    if len(fitting) > config.max_candidates:
        fitting = random.Random(config.seed).sample(fitting, config.max_candidates)
    return sorted(fitting)


# --- training one candidate -----------------------------------------------------------------------


@dataclass
class _State:
    placement: Placement
    result: CandidateResult
    weights: dict[str, torch.Tensor] | None = None
    optimizer: dict | None = None
    steps: int = 0


def build_candidate(base: nn.Module, placement: Placement, config: SearchConfig) -> nn.Module:
    """A copy of `base` with prompts in the placement's layers, its tuned layers trainable, the rest frozen."""
    from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter

    model = copy.deepcopy(base)
    torch.manual_seed(config.seed)  # the same prompt initialisation for every candidate
    if placement.prompt_layers:
        add_llama_adapter(model, LlamaAdapterConfig(adapter_len=config.adapter_len,
                                                    adapter_layers=list(placement.prompt_layers),
                                                    gate=config.gate, prompt_init_std=config.prompt_init_std))
    else:
        model.requires_grad_(False)
    layers = decoder_layers(model)
    for index in placement.tuned_layers:
        layers[index].requires_grad_(True)
    return model


def _train_to(state: _State, base: nn.Module, train: FewShotTask, steps: int, config: SearchConfig) -> nn.Module:
    model = build_candidate(base, state.placement, config)
    if state.weights is not None:
        model.load_state_dict(state.weights, strict=False)
    layers = {id(p) for i in state.placement.tuned_layers for p in decoder_layers(model)[i].parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in layers], "lr": config.lr},
              {"params": [p for p in trainable if id(p) in layers], "lr": config.layer_lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.0)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    model.train()
    n = len(train.examples)
    for step in range(state.steps, steps):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + step))
        batch = collate(train, order[: config.batch_size].tolist(), config.pad_id)
        logits = label_logits(model, batch, train.label_ids).float()
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"].to(logits.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    state.steps = steps
    state.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    state.optimizer = copy.deepcopy(optimizer.state_dict())
    return model


def successive_halving(base: nn.Module, train: FewShotTask, val: FewShotTask, config: SearchConfig) -> SearchReport:
    """Search placements on `val` after short runs on `train`; see the module docstring.

    Args:
        base: the pre-trained model; left unchanged (each candidate trains a copy).
    """
    from tqdm import tqdm

    placements = candidate_placements(base, config)
    states = [_State(p, CandidateResult(p.name, list(p.prompt_layers), list(p.tuned_layers),
                                        placement_cost(base, p, config.adapter_len, config.gate)))
              for p in placements]
    alive, rungs, steps, total = states, [], config.min_steps, 0
    with tqdm(desc="placement search", unit="run", total=None) as bar:
        while True:
            for state in alive:
                total += steps - state.steps
                model = _train_to(state, base, train, steps, config)
                metrics = evaluate(model, val, config.pad_id)
                state.result.curve.append({"steps": steps, "val_loss": metrics["loss"],
                                           "val_accuracy": metrics["accuracy"]})
                del model
                bar.update(1)
            ranked = sorted(alive, key=lambda s: (s.result.curve[-1]["val_loss"], -s.result.curve[-1]["val_accuracy"]))
            rungs.append({"steps": steps, "candidates": [s.placement.name for s in ranked]})
            if len(ranked) == 1:
                break
            keep = max(1, len(ranked) // config.eta)
            for state in ranked[keep:]:
                state.result.eliminated_after_steps = steps
                state.weights = state.optimizer = None
            alive = ranked[:keep]
            steps *= config.eta
    winner = alive[0].placement
    return SearchReport(chosen=winner.name, chosen_prompt_layers=list(winner.prompt_layers),
                        chosen_tuned_layers=list(winner.tuned_layers), budget=config.budget, rungs=rungs,
                        candidates=[s.result for s in states], total_training_steps=total,
                        config={k: v for k, v in asdict(config).items() if k != "candidates"})


def plot_search(report: SearchReport, out_path) -> None:
    """Validation loss of every candidate against its training steps; the chosen one in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for candidate in report.candidates:
        steps = [c["steps"] for c in candidate.curve]
        losses = [c["val_loss"] for c in candidate.curve]
        chosen = candidate.placement == report.chosen
        ax.plot(steps, losses, marker="o", lw=2.5 if chosen else 1, alpha=1 if chosen else 0.6,
                label=f"{candidate.placement} ({candidate.trainable_params:,} params)" + (" [chosen]" if chosen else ""))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation loss")
    ax.set_title(f"successive halving over {len(report.candidates)} placements, budget {report.budget:,} parameters")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


# --- a task with a planted placement --------------------------------------------------------------


def planted_placement_task(base: nn.Module, layer: int, label_ids: tuple[int, int], num_examples: int, *,
                           adapter_len: int = 4, prompt_init_std: float = 8.0, seed: int = 0,
                           length: tuple[int, int] = (8, 12), bos_id: int | None = None) -> FewShotTask:
    """A binary task whose labels come from `base` with LLaMA-Adapter prompts planted in `layer`.

    The teacher is the base model plus random prompts (std `prompt_init_std`) and an open gate in
    that one layer; the label of a random token sequence is whether the teacher's label-word logit
    difference is above its median. Prompts in `layer` can represent the teacher exactly, prompts
    elsewhere only approximately: a search that works should find `layer`.
    """
    from tuner.adapters.llama_adapter import LlamaAdapterConfig, add_llama_adapter
    from tuner.diagnostics.fewshot import FewShotExample

    teacher = copy.deepcopy(base)
    torch.manual_seed(seed + 1)
    add_llama_adapter(teacher, LlamaAdapterConfig(adapter_len=adapter_len, adapter_layers=[layer],
                                                  prompt_init_std=prompt_init_std))
    with torch.no_grad():
        for name, param in teacher.named_parameters():
            if name.endswith("llama_adapter.gate"):
                param.fill_(3.0)  # tanh(3) ~ 0.995: the prompt attention fully on
    rng = random.Random(seed)
    vocab = base.config.vocab_size
    bos = [bos_id] if bos_id is not None else []
    rows = [bos + [rng.randrange(10, vocab) for _ in range(rng.randint(*length))] for _ in range(num_examples)]
    task = FewShotTask([FewShotExample("", 0, ids) for ids in rows], ("<0>", "<1>"), tuple(label_ids), "")
    with torch.no_grad():
        logits = label_logits(teacher.eval(), collate(task), task.label_ids)
    difference = logits[:, 1] - logits[:, 0]
    for example, value in zip(task.examples, difference.tolist()):
        example.label = int(value > float(difference.median()))
    return task

"""Kernel-regime check of prompt-based fine-tuning (Malladi et al., "A Kernel-Based View of Language
Model Fine-Tuning", ICML 2023).

If fine-tuning is in the kernel regime, the fine-tuned model behaves like its first-order Taylor
expansion around the pre-trained weights θ0,

    f_lin(x; θ) = f(x; θ0) + ∇f(x; θ0) · (θ - θ0),

and its predictions are those of kernel regression with the empirical neural tangent kernel
K(x, x') = <∇f(x; θ0), ∇f(x'; θ0)> (SGD), or, for Adam, with the asymmetric sign kernel
K(x, x') = <∇f(x; θ0), sign ∇f(x'; θ0)> (the paper's A-SignGD kernel, solved as an asymmetric
least-squares SVM after He et al. 2022).

f is the model's output on a prompt-based task (fewshot.py): the logit difference of the two label
words at the answer position for a binary task (as the paper does), the C label-word logits
otherwise. Per-example Jacobians come from `torch.func.jacrev`; the linearised model's outputs
from `torch.func.jvp` with the tangent θ_ft - θ0, so nothing is approximated by finite differences.

`kernel_check` fine-tunes a copy of the model on the train split (or takes an already fine-tuned
one) and reports, on the test split: the accuracies of the pre-trained, fine-tuned and linearised
models and of both kernel predictors; how often fine-tuning agrees with each; the linearisation
error |f_ft - f_lin| / |f_ft - f0|; and the relative weight change |θ_ft - θ0| / |θ0|.

Memory: the Jacobians take 4 bytes x (train + test examples) x outputs x parameters; restrict the
parameters with `param_filter` (a regex) for anything beyond small models.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch.func import functional_call, jacrev, jvp

from tuner.diagnostics.fewshot import FewShotTask, collate, label_logits

KERNEL_REGIME_MAX_LINEARISATION_ERROR = 0.2
"""Below this linearisation error the report calls fine-tuning kernel-like (first-order terms
explain at least ~80% of the change of the outputs)."""


@dataclass
class KernelCheckConfig:
    optimizer: Literal["sgd", "adam"] = "adam"
    """The fine-tuning optimizer; the kernel of the same family (SGD or A-SignGD) is the primary one."""
    lr: float = 1e-4
    steps: int = 50
    """Full-batch optimizer steps on the train split (or mini-batch steps with `batch_size`)."""
    batch_size: int | None = None
    param_filter: str | None = None
    """Regex on parameter names: only matching parameters are fine-tuned and enter the kernel."""
    ridge: float = 1e-6
    """Kernel-regression ridge, relative to the kernel's largest eigenvalue."""
    svm_gamma: float = 1e3
    """Regularisation of the asymmetric LS-SVM (larger: closer to interpolation), on the kernel
    scaled to unit spectral norm."""
    svm_mix: float = 0.5
    """Weight of the sign-on-train side of the asymmetric LS-SVM's two predictors (the paper's lambda)."""
    seed: int = 0
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if not self.lr > 0 or self.steps < 0:
            raise ValueError(f"lr must be positive and steps >= 0 (got lr={self.lr}, steps={self.steps})")


@dataclass
class KernelReport:
    config: dict
    num_train: int
    num_test: int
    num_params: int
    """Parameters in the kernel (and trained)."""
    accuracy: dict[str, float]
    """On the test split: pretrained, finetuned, linearised, kernel_sgd, kernel_asignsgd."""
    agreement_with_finetuned: dict[str, float]
    """Fraction of test examples where each predictor's class equals the fine-tuned model's."""
    linearisation_error: float
    """|f_ft - f_lin| / |f_ft - f0| over the test outputs."""
    relative_weight_change: float
    kernel_regime: bool
    train_loss: list[float] = field(default_factory=list)
    outputs: dict[str, list] = field(default_factory=dict)
    """Per test example: label, f0, finetuned, linearised, kernel_sgd, kernel_asignsgd."""

    def to_dict(self) -> dict:
        return asdict(self)


# --- outputs and their gradients ------------------------------------------------------------------


def trainable_names(model: torch.nn.Module, param_filter: str | None) -> list[str]:
    pattern = re.compile(param_filter) if param_filter else None
    names = [n for n, p in model.named_parameters() if p.requires_grad and (pattern is None or pattern.search(n))]
    if not names:
        raise ValueError(f"param_filter {param_filter!r} matches no trainable parameter")
    return names


def _outputs_from_label_logits(logits: torch.Tensor) -> torch.Tensor:
    """[..., C] label-word logits -> the model output f: the logit difference when C == 2."""
    return logits[..., 1:2] - logits[..., 0:1] if logits.shape[-1] == 2 else logits


def output_function(model: torch.nn.Module, label_ids: tuple[int, ...]):
    """f(params, input_ids[T]) -> [C'] for one unpadded example, differentiable in `params`."""

    def f(params: dict[str, torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, params, (input_ids.unsqueeze(0),), {"use_cache": False}).logits
        return _outputs_from_label_logits(logits[0, -1, list(label_ids)])

    return f


def per_example_gradients(model: torch.nn.Module, task: FewShotTask, names: list[str]) -> torch.Tensor:
    """[n, C', P] gradients of each example's outputs with respect to the named parameters."""
    from tqdm import tqdm

    chosen = set(names)
    params = {n: p.detach() for n, p in model.named_parameters() if n in chosen}
    jacobian = jacrev(output_function(model, task.label_ids))
    device = next(model.parameters()).device
    rows = []
    for example in tqdm(task.examples, desc="eNTK gradients", leave=False):
        grads = jacobian(params, torch.tensor(example.input_ids, device=device))
        rows.append(torch.cat([grads[n].flatten(1) for n in names], dim=1).float().cpu())
    return torch.stack(rows)


def model_outputs(model: torch.nn.Module, task: FewShotTask, pad_id: int = 0) -> torch.Tensor:
    """[n, C'] outputs f of every example."""
    with torch.no_grad():
        return _outputs_from_label_logits(label_logits(model, collate(task, None, pad_id), task.label_ids).float()).cpu()


def linearised_outputs(model: torch.nn.Module, task: FewShotTask, names: list[str],
                       delta: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(f0, f_lin) of every example: f_lin = f0 + ∇f(θ0)·delta, by forward-mode AD (torch.func.jvp)."""
    chosen = set(names)
    params = {n: p.detach() for n, p in model.named_parameters() if n in chosen}
    f = output_function(model, task.label_ids)
    device = next(model.parameters()).device
    f0, f_lin = [], []
    with torch.no_grad():
        for example in task.examples:
            ids = torch.tensor(example.input_ids, device=device)
            value, tangent = jvp(lambda p: f(p, ids), (params,), ({n: delta[n] for n in names},))
            f0.append(value.float().cpu())
            f_lin.append((value + tangent).float().cpu())
    return torch.stack(f0), torch.stack(f_lin)


# --- kernel predictors ----------------------------------------------------------------------------


def targets(labels: torch.Tensor, outputs: int) -> torch.Tensor:
    """Regression targets: +-1 for a scalar (binary) output, one-hot rows for C outputs."""
    if outputs == 1:
        return (labels.double() * 2 - 1).unsqueeze(1)
    return torch.nn.functional.one_hot(labels, outputs).double()


def predicted_class(outputs: torch.Tensor) -> torch.Tensor:
    return (outputs[:, 0] > 0).long() if outputs.shape[1] == 1 else outputs.argmax(1)


def sgd_kernel_regression(g_train: torch.Tensor, g_test: torch.Tensor, labels: torch.Tensor, f0_train: torch.Tensor,
                          f0_test: torch.Tensor, ridge: float) -> torch.Tensor:
    """Kernel regression with the eNTK, started from f0: the end point of gradient flow on the
    squared loss for the linearised model, f0(x) + K(x, X) K(X, X)^-1 (Y - f0(X))."""
    n, c, _ = g_train.shape
    a = g_train.reshape(n * c, -1).double()
    b = g_test.reshape(g_test.shape[0] * c, -1).double()
    k_train, k_test = a @ a.T, b @ a.T
    k_train = k_train + ridge * torch.linalg.eigvalsh(k_train).max().clamp_min(1e-30) * torch.eye(n * c, dtype=k_train.dtype)
    residual = (targets(labels, c) - f0_train.double()).reshape(-1, 1)
    coefficients = torch.linalg.lstsq(k_train, residual).solution
    return (f0_test.double() + (k_test @ coefficients).reshape(-1, c)).float()


def asymmetric_sign_kernel_svm(g_train: torch.Tensor, g_test: torch.Tensor, labels: torch.Tensor, gamma: float,
                               mix: float) -> torch.Tensor:
    """The A-SignGD kernel predictor of a binary task: an asymmetric least-squares SVM.

    With K(a, b) = <sign ∇f(a), ∇f(b)> and y in {-1, 1}, the dual variables solve
    [[I/gamma, H], [H^T, I/gamma]] [alpha; beta] = 1 with H_ij = y_i K(x_i, x_j) y_j, and
    f(x) = mix * sum_i alpha_i y_i K(x_i, x) + (1 - mix) * sum_i beta_i y_i K(x, x_i).
    """
    if g_train.shape[1] != 1:
        raise ValueError("the asymmetric sign kernel (Adam) is defined for binary tasks (two label words)")
    a, b = g_train[:, 0].double(), g_test[:, 0].double()
    sign_a, sign_b = a.sign(), b.sign()
    k_train = sign_a @ a.T  # [i, j] = <sign g_i, g_j>
    scale = torch.linalg.matrix_norm(k_train, ord=2).clamp_min(1e-30)
    k_train, k_to_test, k_from_test = k_train / scale, (sign_a @ b.T) / scale, (sign_b @ a.T) / scale
    y = labels.double() * 2 - 1
    n = len(y)
    h = y[:, None] * k_train * y[None, :]
    eye = torch.eye(n, dtype=h.dtype) / gamma
    system = torch.cat([torch.cat([eye, h], 1), torch.cat([h.T, eye], 1)], 0)
    solution = torch.linalg.lstsq(system, torch.ones(2 * n, 1, dtype=h.dtype)).solution[:, 0]
    alpha, beta = solution[:n], solution[n:]
    omega = k_to_test.T @ (alpha * y)
    nu = k_from_test @ (beta * y)
    return (mix * omega + (1 - mix) * nu).float().unsqueeze(1)


# --- fine-tuning ----------------------------------------------------------------------------------


def fine_tune(model: torch.nn.Module, task: FewShotTask, names: list[str], config: KernelCheckConfig) -> list[float]:
    """Prompt-based fine-tuning of the named parameters in place; returns the loss per step."""
    chosen = set(names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in chosen)
    params = [p for n, p in model.named_parameters() if n in chosen]
    optimizer = (torch.optim.SGD(params, lr=config.lr) if config.optimizer == "sgd"
                 else torch.optim.Adam(params, lr=config.lr))
    generator = torch.Generator().manual_seed(config.seed)
    n = len(task.examples)
    losses = []
    model.train()
    for _ in range(config.steps):
        rows = (torch.randperm(n, generator=generator)[: config.batch_size].tolist() if config.batch_size else None)
        batch = collate(task, rows, config.pad_id)
        logits = label_logits(model, batch, task.label_ids).float()
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"].to(logits.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((predicted_class(a) == predicted_class(b)).float().mean())


@dataclass
class KernelPredictions:
    """Everything computed at θ0, shared by every fine-tuning run compared against it."""

    names: list[str]
    num_params: int
    kernel: dict[str, torch.Tensor]
    """Test outputs of kernel_sgd and (binary tasks) kernel_asignsgd."""


def kernel_predictions(model: torch.nn.Module, train: FewShotTask, test: FewShotTask,
                       config: KernelCheckConfig) -> KernelPredictions:
    """eNTK gradients at θ0 and the predictions of both kernel predictors on the test split."""
    model.eval()
    names = trainable_names(model, config.param_filter)
    g_train = per_example_gradients(model, train, names)
    g_test = per_example_gradients(model, test, names)
    f0_train, f0_test = model_outputs(model, train, config.pad_id), model_outputs(model, test, config.pad_id)
    kernel = {"kernel_sgd": sgd_kernel_regression(g_train, g_test, train.labels, f0_train, f0_test, config.ridge)}
    if g_train.shape[1] == 1:
        kernel["kernel_asignsgd"] = asymmetric_sign_kernel_svm(g_train, g_test, train.labels, config.svm_gamma,
                                                               config.svm_mix)
    return KernelPredictions(names, int(g_train.shape[2]), kernel)


def compare_with_finetuned(model: torch.nn.Module, finetuned: torch.nn.Module, test: FewShotTask,
                           predictions: KernelPredictions, config: KernelCheckConfig,
                           train_loss: list[float] | None = None, num_train: int = 0) -> KernelReport:
    """The report of one fine-tuned model against θ0's linearisation and kernel predictors."""
    names = predictions.names
    finetuned.eval()
    base, tuned = dict(model.named_parameters()), dict(finetuned.named_parameters())
    delta = {n: (tuned[n].detach() - base[n].detach()) for n in names}
    weight_norm = math.sqrt(sum(float(base[n].detach().double().pow(2).sum()) for n in names))
    change_norm = math.sqrt(sum(float(d.double().pow(2).sum()) for d in delta.values()))
    f0_test, f_lin = linearised_outputs(model, test, names, delta)
    f_ft = model_outputs(finetuned, test, config.pad_id)
    outputs = {"pretrained": f0_test, "finetuned": f_ft, "linearised": f_lin, **predictions.kernel}
    labels = test.labels
    moved = float((f_ft - f0_test).norm())
    error = float((f_ft - f_lin).norm()) / moved if moved > 0 else 0.0
    return KernelReport(
        config=asdict(config), num_train=num_train, num_test=len(test.examples), num_params=predictions.num_params,
        accuracy={k: float((predicted_class(v) == labels).float().mean()) for k, v in outputs.items()},
        agreement_with_finetuned={k: _agreement(v, f_ft) for k, v in outputs.items() if k != "finetuned"},
        linearisation_error=error, relative_weight_change=change_norm / weight_norm if weight_norm else float("inf"),
        kernel_regime=error < KERNEL_REGIME_MAX_LINEARISATION_ERROR, train_loss=train_loss or [],
        outputs={"label": labels.tolist(), **{k: v.tolist() for k, v in outputs.items()}},
    )


def kernel_check(model: torch.nn.Module, train: FewShotTask, test: FewShotTask, config: KernelCheckConfig,
                 learning_rates: list[float] | None = None,
                 finetuned: torch.nn.Module | None = None) -> list[KernelReport]:
    """Compare fine-tuning with its linearisation and kernel predictors; see the module docstring.

    Args:
        model: the pre-trained model (θ0); left unchanged.
        train, test: the few-shot splits (same label words).
        config: fine-tuning and solver settings.
        learning_rates: fine-tune once per rate (default: `config.lr`), sharing the work done at θ0,
            to see where fine-tuning leaves the kernel regime.
        finetuned: an already fine-tuned copy of `model` to analyse instead of fine-tuning here.

    Returns:
        One report per fine-tuned model.
    """
    torch.manual_seed(config.seed)
    predictions = kernel_predictions(model, train, test, config)
    if finetuned is not None:
        return [compare_with_finetuned(model, finetuned, test, predictions, config, num_train=len(train.examples))]
    reports = []
    for lr in learning_rates or [config.lr]:
        run = dataclasses.replace(config, lr=lr)
        torch.manual_seed(run.seed)
        tuned = copy.deepcopy(model)
        losses = fine_tune(tuned, train, predictions.names, run)
        reports.append(compare_with_finetuned(model, tuned, test, predictions, run, losses, len(train.examples)))
        del tuned
    return reports


def plot_kernel_reports(reports: list[KernelReport], out_path) -> None:
    """One row per fine-tuning run. Left: change of each test output under fine-tuning against its
    change under the linearised model (on the diagonal: the kernel regime). Right: test accuracy
    of each predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(reports), 2, figsize=(10, 3.6 * len(reports)), squeeze=False)
    for (left, right), report in zip(axes, reports):
        f0 = torch.tensor(report.outputs["pretrained"]).flatten()
        ft = torch.tensor(report.outputs["finetuned"]).flatten() - f0
        lin = torch.tensor(report.outputs["linearised"]).flatten() - f0
        left.scatter(lin.numpy(), ft.numpy(), s=14, alpha=0.8)
        limit = float(torch.cat([ft.abs(), lin.abs()]).max()) * 1.1 or 1.0
        left.plot([-limit, limit], [-limit, limit], color="gray", lw=1)
        left.set_xlabel("f_lin - f0 (linearised model)")
        left.set_ylabel("f_ft - f0 (fine-tuned)")
        left.set_title(f"{report.config['optimizer']} lr={report.config['lr']:g}: linearisation error "
                       f"{report.linearisation_error:.3g}, |Δθ|/|θ0| {report.relative_weight_change:.2g}", fontsize=9)
        names = list(report.accuracy)
        right.bar(range(len(names)), [report.accuracy[n] for n in names], color="tab:blue")
        right.set_xticks(range(len(names)), names, rotation=25, ha="right")
        right.set_ylim(0, 1)
        right.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)

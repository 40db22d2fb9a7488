"""The kernel-regime check: solvers, and real fine-tuning of a tiny model at a small and a large rate."""

from __future__ import annotations

import json

import pytest
import torch

from tuner.diagnostics.cli import main
from tuner.diagnostics.kernel import asymmetric_sign_kernel_svm, predicted_class, sgd_kernel_regression


def test_sgd_kernel_regression_interpolates_the_train_targets_from_f0():
    generator = torch.Generator().manual_seed(0)
    gradients = torch.randn(6, 1, 50, generator=generator)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    f0 = torch.randn(6, 1, generator=generator)
    predicted = sgd_kernel_regression(gradients, gradients, labels, f0, f0, ridge=1e-9)
    torch.testing.assert_close(predicted[:, 0], labels.float() * 2 - 1, atol=1e-4, rtol=0)


def test_the_asymmetric_sign_kernel_machine_separates_a_separable_task():
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(40, generator=generator)
    points = torch.randn(30, 1, 40, generator=generator)
    labels = (points[:, 0] @ direction > 0).long()
    predicted = asymmetric_sign_kernel_svm(points[:20], points[20:], labels[:20], gamma=1e3, mix=0.5)
    assert (predicted_class(predicted) == labels[20:]).float().mean() >= 0.8


def test_small_learning_rate_fine_tuning_is_kernel_like_and_a_large_one_is_not(
        tmp_path, sentiment_model_dir, one_thread, capsys):
    code = main(["kernel", "--model", str(sentiment_model_dir), "--synthetic", "16", "--optimizer", "adam",
                 "--lr", "1e-5", "3e-3", "--steps", "20", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    small, large = json.loads((tmp_path / "kernel_check.json").read_text())
    assert small["num_train"] == small["num_test"] == 16 and small["num_params"] > 500_000

    # Tiny steps: the first-order Taylor expansion explains the change of the outputs.
    assert small["linearisation_error"] < 0.2 and small["kernel_regime"]
    assert small["agreement_with_finetuned"]["linearised"] >= 0.9
    # Large steps: it does not, and the weights moved far more.
    assert large["linearisation_error"] > 1.0 and not large["kernel_regime"]
    assert large["relative_weight_change"] > 30 * small["relative_weight_change"]
    assert large["train_loss"][-1] < 0.5 * large["train_loss"][0]  # this fine-tuning did learn the task

    # The kernel predictions depend on θ0 only: the same for both runs, reported for both kernels.
    assert small["outputs"]["kernel_sgd"] == large["outputs"]["kernel_sgd"]
    assert set(small["accuracy"]) == {"pretrained", "finetuned", "linearised", "kernel_sgd", "kernel_asignsgd"}
    assert (tmp_path / "kernel_check.png").stat().st_size > 0
    assert "kernel regime: yes" in capsys.readouterr().out


def test_a_label_word_that_is_not_one_token_is_a_one_line_error(tmp_path, sentiment_model_dir, capsys):
    code = main(["kernel", "--model", str(sentiment_model_dir), "--synthetic", "4", "--label-words", " bad",
                 " wonderfully", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "label word ' bad' is 2 tokens" in err and "Traceback" not in err

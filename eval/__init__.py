"""tuner's evaluation harness: data -> generate -> extract -> execute -> score, one module each.

Used from the `tuner-eval` command (`eval.cli`). Code execution goes through `eval.sandbox`.
"""

"""tuner's evaluation harness: data -> generate -> extract -> execute -> score, one module each.

Used from the `tuner-eval` command (`tuner_eval.cli`). Code execution goes through `tuner_eval.sandbox`.
"""

"""Evol-Instruct for code (`tuner evolve`): evolve a seed set with a teacher model, eliminate
failed rewrites, deduplicate and decontaminate, and write a `tuner train` dataset.

Papers: WizardLM / Evol-Instruct (Xu et al., 2023, arXiv:2304.12244) and WizardCoder (Luo et al.,
2023, arXiv:2306.08568). The stages live in one module each: prompts, records, eliminate, dedup,
benchmarks + decontaminate, journal (resume state), teacher, pipeline, cli.
"""

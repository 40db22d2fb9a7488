"""Training diagnostics: a gradient-health monitor, a kernel-regime check and an adapter placement search.

Modules are imported by what uses them (`import tuner.diagnostics` costs nothing):
    grad_health   per-layer gradient/update norms inside `tuner train` (DeepSpeed ZeRO 0-3), alarms
    kernel        empirical NTK of a prompt-based few-shot task vs. real fine-tuning (Malladi et al. 2023)
    placement     successive-halving search of LLaMA-Adapter prompt placement under a parameter budget
    cli           `tuner diagnose grad-health|kernel|placement`
"""

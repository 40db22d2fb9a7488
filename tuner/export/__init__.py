"""`tuner export CKPT --out DIR`: any training output as a folder transformers loads and vLLM serves.

CKPT may be a run's output folder (its `final/` is used, else its newest complete checkpoint), a
`final/` folder, or one resumable checkpoint (`checkpoints/step_N`, ZeRO-0/2/3 shards, from which
the fp32 master weights are consolidated). By training method:

- full: the weights are written as a plain HF folder (safetensors, config, tokenizer).
- lora / qlora: the adapter is merged into the (unquantised) base weights, giving a plain folder.
- llama_adapter: the gated prompt attention is not a weight change and cannot be merged; the folder
  holds base and adapter weights under the architecture names of tuner's transformers and vLLM
  model classes.

The package, by role:
    cli.py            `tuner export`
    sources.py        what a CKPT argument is, consolidation of DeepSpeed shards, export per kind
    llama_adapter.py  the LLaMA-Adapter folder writer (V2 folding, the config.json section)
    hf_model.py       transformers classes of exported LLaMA-Adapter folders
    vllm_plugin/      vLLM model classes of the same folders (vLLM general plugin)
"""

from tuner.export.errors import ExportError
from tuner.export.sources import export

__all__ = ["ExportError", "export"]

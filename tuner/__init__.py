"""tuner: instruction tuning for LLaMA- and StarCoder-class models."""

__version__ = "0.1.0"

"""Text generation backends shared by the evaluation harness and the Evol-Instruct teacher."""

from tuner.generation.base import GenerationResult, Generator, Message, SamplingConfig

__all__ = ["GenerationResult", "Generator", "Message", "SamplingConfig"]

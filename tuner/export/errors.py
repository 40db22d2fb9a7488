"""The one error `tuner export` raises for a checkpoint it cannot export."""


class ExportError(ValueError):
    """The folder given to `tuner export` cannot be exported; the message says why."""

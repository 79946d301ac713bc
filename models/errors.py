"""Errors raised by the model layer, each carrying what an operator needs to fix it."""


class ModelError(RuntimeError):
    """A model could not be located, verified, loaded or run."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 does not match the registry or the configured digest."""


class RuntimeMissingError(ModelError):
    """onnxruntime is not installed: the `cpu` or `gpu` extra was left out."""

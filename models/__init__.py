"""trainmark's model zoo. Importing this package registers every model (``faults``: the
failure-injection models tests use; ``variants``: the profile tests' model with and without one
extra operator; both hidden from ``list_models()``)."""

from models import convnet, faults, resnet, transformer, variants  # noqa: F401,E402
from models._registry import (
    IMAGE_CLASSIFICATION,
    LANGUAGE_MODELING,
    TASKS,
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = [
    "IMAGE_CLASSIFICATION",
    "LANGUAGE_MODELING",
    "TASKS",
    "ModelInfo",
    "create_model",
    "get_model_info",
    "list_models",
    "register_model",
]

"""trainmark's model zoo. Importing this package registers every model (``faults``: the
failure-injection models tests use; ``variants``: the profile tests' model with and without one
extra operator; both hidden from ``list_models()``). ``torchvision:NAME`` and ``timm:NAME``
name any model of those libraries (``sources``); they are imported only when such a name is
used."""

from models import (  # noqa: F401,E402
    convnet,
    faults,
    imagenet,
    llama,
    resnet,
    transformer,
    variants,
)
from models._registry import (
    IMAGE_CLASSIFICATION,
    LANGUAGE_MODELING,
    TASKS,
    ModelInfo,
    register_model,
)
from models.catalog import (
    count_parameters,
    create_model,
    expand_model_names,
    get_model_info,
    list_models,
    transformer_blocks,
)
from models.sources import SOURCES, SourceUnavailable

__all__ = [
    "IMAGE_CLASSIFICATION",
    "LANGUAGE_MODELING",
    "SOURCES",
    "TASKS",
    "ModelInfo",
    "SourceUnavailable",
    "count_parameters",
    "create_model",
    "expand_model_names",
    "get_model_info",
    "list_models",
    "register_model",
    "transformer_blocks",
]

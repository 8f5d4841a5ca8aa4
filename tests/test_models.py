import pytest
import torch

from models import (
    IMAGE_CLASSIFICATION,
    LANGUAGE_MODELING,
    count_parameters,
    create_model,
    get_model_info,
    list_models,
    register_model,
)
from models.convnet import ConvNet

ZOO = ["convnet", "gpt2", "llama3-debug", "llama3.1-405b", "llama3.1-70b", "llama3.1-8b",
       "llama3.2-1b", "llama3.2-3b", "resnet18", "resnet20", "resnet50", "transformer", "vit_b_16"]
# Above this many parameters a model is built on the meta device here: shapes, no memory (the
# Llama 3 presets from 1B up would take gigabytes and minutes even at a 65-token vocabulary).
META_ABOVE = 300_000_000


def test_registry_lists_the_zoo():
    assert list_models() == ZOO
    assert list_models("resnet*") == ["resnet18", "resnet20", "resnet50"]
    assert "test_oom" not in list_models()
    assert "test_oom" in list_models(include_test=True)


def test_unknown_model_names_the_valid_choices():
    with pytest.raises(KeyError, match="valid: " + ", ".join(ZOO)):
        create_model("vgg16")


@pytest.mark.parametrize(
    "name, low, high",
    [("convnet", 0.5e6, 0.55e6), ("resnet18", 11.1e6, 11.25e6), ("resnet20", 0.26e6, 0.28e6)],
)
def test_parameter_counts(name, low, high):
    n = sum(p.numel() for p in create_model(name).parameters())
    assert low <= n <= high


@pytest.mark.parametrize("name", list_models())
def test_declared_parameter_counts_are_real_counts(name):
    # `trainmark list` shows the declared count without building the model; a change to a
    # model that changes its size must change the declaration too.
    declared = get_model_info(name).num_params
    assert declared is not None, f"{name}: declare num_params in @register_model"
    assert count_parameters(name) == declared
    assert count_parameters(name, use_declared=False) == declared


def test_published_parameter_counts():
    # Independent figures: torchvision's model cards (ResNet-50 25,557,032; ViT-B/16
    # 86,567,656) and GPT-2 small's 124,439,808 with the output head tied to the embedding.
    assert count_parameters("resnet50", use_declared=False) == 25_557_032
    assert count_parameters("vit_b_16", use_declared=False) == 86_567_656
    assert count_parameters("gpt2", use_declared=False) == 124_439_808


@pytest.mark.parametrize(
    "name, shape, classes, vocab, unit",
    [("convnet", (3, 32, 32), 10, None, "samples/s"),
     ("resnet18", (3, 32, 32), 10, None, "samples/s"),
     ("resnet20", (3, 32, 32), 10, None, "samples/s"),
     ("resnet50", (3, 224, 224), 1000, None, "samples/s"),
     ("vit_b_16", (3, 224, 224), 1000, None, "samples/s"),
     ("transformer", (128,), None, None, "tokens/s"),
     ("gpt2", (1024,), None, 50_257, "tokens/s")],
)
def test_models_declare_their_input(name, shape, classes, vocab, unit):
    info = get_model_info(name)
    assert (info.input_shape, info.num_classes, info.vocab_size, info.unit) == (
        shape, classes, vocab, unit)


def test_builder_kwargs_follow_the_declared_input():
    assert get_model_info("resnet50").builder_kwargs() == {
        "num_classes": 1000, "in_channels": 3, "image_size": 224}
    assert get_model_info("gpt2").builder_kwargs() == {"vocab_size": 50_257, "block_size": 1024}
    # The char-level transformer's vocabulary is the dataset's: left to the builder.
    assert get_model_info("transformer").builder_kwargs() == {"block_size": 128}


def test_fault_models_get_the_cifar_defaults():
    info = get_model_info("test_oom")
    assert (info.input_shape, info.num_classes, info.vocab_size) == ((3, 32, 32), 10, None)


@pytest.mark.parametrize("kwargs, message", [
    ({"task": LANGUAGE_MODELING}, r"input_shape=\(T,\)"),
    ({"task": LANGUAGE_MODELING, "input_shape": (64,), "num_classes": 5}, "vocab_size"),
    ({"task": IMAGE_CLASSIFICATION, "vocab_size": 100}, "num_classes"),
    ({"task": IMAGE_CLASSIFICATION, "input_shape": (224, 224)}, r"\(C, H, W\)"),
    ({"task": IMAGE_CLASSIFICATION, "input_shape": (3, 224, 112)}, "square"),
])
def test_register_model_refuses_an_inconsistent_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        register_model(default_dataset="synthetic", family="test", default_lr={}, **kwargs)


# Tiny inputs: resnet50, vit_b_16 and gpt2 at their compared sizes (224 px, 1024 tokens of a
# 50,257-token vocabulary) would make this CPU test take seconds per model for nothing.
@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_shapes(name):
    info = get_model_info(name)
    if info.task == "language-modeling":
        on = torch.device("meta" if (info.num_params or 0) > META_ABOVE else "cpu")
        with on:
            model = create_model(name, vocab_size=65, block_size=16)
            x = torch.randint(0, 65, (2, 16))
        out = model(x)
        assert out.shape == (2, 16, 65)
    else:
        model = create_model(name, num_classes=10, in_channels=3, image_size=32)
        out = model(torch.rand(2, 3, 32, 32))
        assert out.shape == (2, 10)
    out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_convnet_is_the_article_architecture_with_4096_features():
    m = ConvNet()
    assert (m.conv1.in_channels, m.conv1.out_channels, m.conv1.padding) == (3, 32, (1, 1))
    assert (m.conv2.in_channels, m.conv2.out_channels) == (32, 64)
    assert [m.fc1.in_features, m.fc1.out_features, m.fc2.out_features, m.fc3.out_features] == [
        4096, 120, 84, 10]


def test_article_9216_view_fails_on_cifar_sized_input():
    """The defect the ConvNet corrects: 9216 features only fit a 28x28 input."""
    features = torch.zeros(4, 64, 8, 8)  # after two pools of a 32x32 batch of 4
    message = r"shape '\[-1, 9216\]' is invalid for input of size 16384"
    with pytest.raises(RuntimeError, match=message):
        features.view(-1, 9216)


def test_transformer_head_is_tied_and_causal():
    model = create_model("transformer")
    assert model.head.weight is model.tok_emb.weight
    model.eval()
    x = torch.randint(0, 65, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 65  # change only the future
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[0, :8], b[0, :8])  # earlier positions don't see the change
    assert not torch.allclose(a[0, 8:], b[0, 8:])

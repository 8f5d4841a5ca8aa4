import pytest
import torch

from models import create_model, get_model_info, list_models
from models.convnet import ConvNet


def test_registry_lists_the_zoo():
    assert list_models() == ["convnet", "resnet18", "resnet20", "transformer"]
    assert list_models("resnet*") == ["resnet18", "resnet20"]
    assert "test_oom" not in list_models()
    assert "test_oom" in list_models(include_test=True)


def test_unknown_model_names_the_valid_choices():
    with pytest.raises(KeyError, match="valid: convnet, resnet18, resnet20, transformer"):
        create_model("vgg16")


@pytest.mark.parametrize(
    "name, low, high",
    [("convnet", 0.5e6, 0.55e6), ("resnet18", 11.1e6, 11.25e6), ("resnet20", 0.26e6, 0.28e6)],
)
def test_parameter_counts(name, low, high):
    n = sum(p.numel() for p in create_model(name).parameters())
    assert low <= n <= high


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_shapes(name):
    info = get_model_info(name)
    model = create_model(name)
    if info.task == "language-modeling":
        x = torch.randint(0, 65, (2, 16))
        out = model(x)
        assert out.shape == (2, 16, 65)
    else:
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

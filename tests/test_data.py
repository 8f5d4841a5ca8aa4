import pytest
import torch

from harness.core.data import load_dataset, synthetic_images, synthetic_text
from harness.errors import UserError

CPU = torch.device("cpu")


def test_synthetic_images_are_deterministic_per_seed():
    a = load_dataset("synthetic", CPU, data_seed=3, train_samples=64, eval_samples=16)
    b = load_dataset("synthetic", CPU, data_seed=3, train_samples=64, eval_samples=16)
    c = load_dataset("synthetic", CPU, data_seed=4, train_samples=64, eval_samples=16)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.eval_y, b.eval_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (64, 3, 32, 32) and a.train_x.dtype == torch.float32
    assert 0.0 <= a.train_x.min() and a.train_x.max() <= 1.0


def test_synthetic_images_are_learnable_not_noise():
    """Class means of the training split classify the held-out split far above chance."""
    x, y = synthetic_images(2000, seed=1, template_seed=0)
    ex, ey = synthetic_images(500, seed=2, template_seed=0)
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)  # (10, 3072)
    pred = torch.cdist(ex.flatten(1), means).argmin(1)
    accuracy = (pred == ey).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1


def test_synthetic_text_is_deterministic_and_structured():
    assert synthetic_text(5000, 1) == synthetic_text(5000, 1)
    assert synthetic_text(5000, 1) != synthetic_text(5000, 2)
    data = load_dataset("synthetic-text", CPU)
    n_train, n_eval = data.train_tokens.numel(), data.eval_tokens.numel()
    assert n_train == pytest.approx(9 * n_eval, rel=0.01)  # 90/10 split
    x, y = data.batch(torch.tensor([0, 5]))
    assert x.shape == (2, 128) and torch.equal(x[:, 1:], y[:, :-1])  # targets are next tokens


def test_text_file_loads_with_char_vocab(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be, that is the question. " * 100, encoding="utf-8")
    data = load_dataset(f"text:{path}", CPU)
    assert data.vocab == sorted(set(path.read_text()))
    assert data.model_kwargs == {"vocab_size": len(data.vocab), "block_size": 128}


@pytest.mark.parametrize("content, message", [(None, "text file not found"),
                                              (b"\xff\xfe\x00bad", "is not UTF-8"),
                                              (b"short", "at least")])
def test_bad_text_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_dataset(f"text:{path}", CPU)


def test_cifar10_loads_through_torchvision_from_its_on_disk_format(cifar_dir):
    data = load_dataset("cifar10", CPU, data_dir=str(cifar_dir), eval_samples=1000)
    assert data.train_x.shape == (200, 3, 32, 32)  # 5 batches of 40
    assert data.eval_x.shape == (60, 3, 32, 32)
    assert data.train_x.dtype == torch.float32 and data.train_x.max() <= 1.0  # like ToTensor()
    assert set(data.train_y.tolist()) <= set(range(10))


def test_missing_cifar10_names_the_directory_and_the_offline_alternative(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", CPU, data_dir=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "nowhere" in msg and "--download" in msg and "--dataset synthetic" in msg
    assert "\n" not in msg

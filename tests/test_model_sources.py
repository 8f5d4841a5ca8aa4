"""The standard workloads (resnet50, vit_b_16, gpt2) and any model by name (torchvision:NAME,
timm:NAME): published parameter counts, tiny forward/backward passes, wildcards, the missing
timm extra, and ``trainmark list``. CPU only, tiny shapes."""

import subprocess
import sys

import pytest
import torch
import torchvision.models as tvm

from harness.cli import main
from models import (
    SourceUnavailable,
    count_parameters,
    create_model,
    expand_model_names,
    get_model_info,
    list_models,
)
from models.sources import source_model_info

# Published figures, independent of this code: torchvision's model docs (the weights' meta
# "num_params") and GPT-2 small as released (Radford et al. 2019; Hugging Face's `gpt2`
# checkpoint: 124,439,808 with the head tied to the 50,257 x 768 token embedding and 1024
# positions).
RESNET50 = 25_557_032
VIT_B_16 = 86_567_656
GPT2_SMALL = 124_439_808


@pytest.mark.parametrize("name, published", [
    ("resnet50", RESNET50), ("vit_b_16", VIT_B_16), ("gpt2", GPT2_SMALL),
    ("torchvision:resnet50", RESNET50), ("torchvision:vit_b_16", VIT_B_16),
])
def test_parameter_counts_match_the_published_figures(name, published):
    assert count_parameters(name) == published


def test_every_torchvision_model_counts_what_torchvision_publishes():
    """All classification models, on the meta device, against their weights' num_params
    (RegNets build their widths with tensors: the count's fallback path)."""
    for name in tvm.list_models(module=tvm):
        published = tvm.get_model_weights(name).DEFAULT.meta["num_params"]
        if name == "inception_v3":
            # Built without the auxiliary classifier (its tuple output is no benchmark loss):
            # the published figure less InceptionAux(768, 1000).
            aux = tvm.inception.InceptionAux(768, 1000)
            published -= sum(p.numel() for p in aux.parameters())
        assert count_parameters(f"torchvision:{name}") == published, name


def test_count_parameters_takes_builder_overrides():
    # ResNet-50's head is 2048 x classes + classes: 990 classes fewer than ImageNet's 1000.
    assert count_parameters("resnet50", num_classes=10) == RESNET50 - 2049 * 990


def train_step_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    out = model(x)
    out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return out


@pytest.mark.parametrize("name", ["torchvision:resnet18", "resnet50", "vit_b_16"])
def test_image_workloads_train_at_a_tiny_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=3, image_size=32)
    assert train_step_logits(model, torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_in_channels_replace_the_stem_of_a_torchvision_model():
    model = create_model("torchvision:resnet18", num_classes=4, in_channels=1, image_size=32)
    assert model.conv1.in_channels == 1
    assert train_step_logits(model, torch.rand(2, 1, 32, 32)).shape == (2, 4)


def test_a_size_taking_torchvision_model_gets_the_size():
    model = create_model("torchvision:vit_b_16", num_classes=4, image_size=32)
    assert model.image_size == 32
    assert train_step_logits(model, torch.rand(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("name, size, words", [
    ("vit_b_16", 40, "divisible by its 16 px patch"),
    ("torchvision:inception_v3", 32, "cannot run on 3x32x32 images"),
    ("torchvision:vit_b_16", 40, "cannot run on 3x40x40 images"),
])
def test_a_size_a_model_cannot_take_is_a_clear_error(name, size, words):
    with pytest.raises(ValueError, match=words):
        create_model(name, num_classes=4, image_size=size)


def test_gpt2_runs_at_a_tiny_block_with_its_vocabulary():
    torch.manual_seed(0)
    model = create_model("gpt2", vocab_size=50_257, block_size=16)
    assert model.head.weight is model.tok_emb.weight
    model.eval()
    with torch.no_grad():
        logits = model(torch.randint(0, 50_257, (1, 16)))
    assert logits.shape == (1, 16, 50_257) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="1024 positions"):
        create_model("gpt2", block_size=2048)


def test_source_models_declare_their_own_default_input():
    info = get_model_info("torchvision:inception_v3")
    assert (info.input_shape, info.num_classes, info.unit) == ((3, 299, 299), 1000, "samples/s")
    info = get_model_info("torchvision:resnet18")
    assert (info.input_shape, info.task, info.family) == (
        (3, 224, 224), "image-classification", "torchvision")
    assert info.default_dataset == "synthetic" and set(info.default_lr) == {
        "sgd", "adam", "adagrad"}
    assert get_model_info("torchvision:resnet18") is info  # made once


@pytest.mark.parametrize("name, words", [
    ("torchvision:resnet5", "trainmark list 'torchvision:\\*'"),
    ("torchvision:resnet5", "did you mean torchvision:resnet50"),
    ("hf:bert", "unknown model source 'hf'"),
    ("vgg16", "or any torchvision:NAME or timm:NAME"),
])
def test_unknown_names_say_where_to_look(name, words):
    with pytest.raises(KeyError, match=words):
        get_model_info(name)


def test_wildcards_expand_in_order_without_duplicates():
    resnets = [f"torchvision:{n}" for n in tvm.list_models(module=tvm, include="resnet*")]
    assert len(resnets) == 5
    assert expand_model_names(["torchvision:resnet*"]) == sorted(resnets)
    assert list_models("torchvision:resnet*") == sorted(resnets)
    mixed = expand_model_names(["gpt2", "resnet*", "torchvision:resnet18", "resnet50",
                                "torchvision:resnet*"])
    rest = [n for n in sorted(resnets) if n != "torchvision:resnet18"]
    assert mixed == ["gpt2", "resnet18", "resnet20", "resnet50", "torchvision:resnet18", *rest]
    with pytest.raises(KeyError, match="no model matches 'torchvision:nosuch\\*'"):
        expand_model_names(["convnet", "torchvision:nosuch*"])
    with pytest.raises(KeyError, match="unknown model 'nosuch'"):
        expand_model_names(["nosuch"])


def test_importing_models_imports_neither_library():
    code = ("import sys, models; "
            "assert 'torchvision' not in sys.modules and 'timm' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torchvision', 'timm')))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_timm_models_by_name():
    timm = pytest.importorskip("timm")
    assert get_model_info("timm:vit_base_patch16_384").input_shape == (3, 384, 384)
    assert count_parameters("timm:resnet50") == RESNET50
    names = [f"timm:{n}" for n in timm.list_models("resnet1*")]
    assert names and expand_model_names(["timm:resnet1*"]) == sorted(names)
    model = create_model("timm:resnet18", num_classes=4, in_channels=1, image_size=32)
    assert train_step_logits(model, torch.rand(2, 1, 32, 32)).shape == (2, 4)
    # A fixed-size model (a position table) is built for the size asked.
    model = create_model("timm:vit_tiny_patch16_224", num_classes=4, image_size=32)
    assert train_step_logits(model, torch.rand(2, 3, 32, 32)).shape == (2, 4)


@pytest.fixture
def without_timm(monkeypatch):
    """As if timm were not installed (and no timm model had been looked up before)."""
    monkeypatch.setitem(sys.modules, "timm", None)
    source_model_info.cache_clear()
    yield
    source_model_info.cache_clear()


def test_a_missing_timm_names_the_extra(without_timm, capsys):
    extra = "pip install 'trainmark[timm]'"
    with pytest.raises(SourceUnavailable, match="optional 'timm' extra") as exc:
        get_model_info("timm:resnet18")
    assert extra in str(exc.value)
    with pytest.raises(SourceUnavailable):
        expand_model_names(["timm:vit_*"])
    assert main(["list", "timm:*"]) == 2
    err = capsys.readouterr().err
    assert extra in err and len(err.strip().splitlines()) == 1
    assert list_models("torchvision:resnet18") == ["torchvision:resnet18"]  # unaffected


def test_list_shows_sizes_and_inputs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "25.6M" in rows["resnet50"] and "3x224x224" in rows["resnet50"]
    assert "86.6M" in rows["vit_b_16"] and "3x224x224" in rows["vit_b_16"]
    assert "124.4M" in rows["gpt2"] and "1024 tokens" in rows["gpt2"]
    assert "synthetic-tokens" in rows["gpt2"]
    assert "11.2M" in rows["resnet18"] and "3x32x32" in rows["resnet18"]
    assert "128 tokens" in rows["transformer"]


def test_list_pattern_lists_a_source(capsys):
    assert main(["list", "torchvision:resnet*"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  torchvision:")]
    assert listed == sorted(f"torchvision:{n}" for n in tvm.list_models(module=tvm,
                                                                       include="resnet*"))
    assert "25.6M" in out  # a few matches: counted
    assert main(["list", "nosuch*"]) == 2
    err = capsys.readouterr().err
    assert "nosuch*" in err and len(err.strip().splitlines()) == 1


def test_a_model_that_cannot_run_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """Inception v3 cannot shrink a 32-pixel image through its stem: that config becomes an
    ``error`` record naming the cause, and the next model (a torchvision ResNet at 32 px, 4
    classes, through the sweep's wildcard expansion) still trains."""
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--models", "torchvision:inception_v3,torchvision:resnet1?",
                 "--image-size", "32", "--num-classes", "4", "--batch-sizes", "2",
                 "--precisions", "fp32", "--optimizers", "sgd", "--warmup", "1", "--steps", "1",
                 "--repeats", "1", "--eval-samples", "8", "--train-samples", "16",
                 "--isolation", "none", "--out", "r.jsonl", "--no-report"])
    import json

    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    by_model = {r["model"]: r for r in records}
    assert list(by_model) == ["torchvision:inception_v3", "torchvision:resnet18"]
    bad, good = by_model.values()
    assert bad["status"] == "error" and "32" in bad["error"] and "\n" not in bad["error"]
    assert good["status"] == "ok" and good["input_shape"] == "3x32x32"
    assert good["model_classes"] == 4
    assert code == 0  # failed configs are rows: the sweep itself succeeded



@pytest.mark.parametrize("name", ["resnet50", "vit_b_16", "torchvision:resnet18",
                                  "timm:resnet18"])
def test_models_are_randomly_initialised_and_never_fetch_weights(name, monkeypatch):
    """A benchmark of training speed never loads pretrained weights: offline CI would fail, and
    a cached download would quietly change what is trained. Two builds under different seeds
    must differ (pretrained weights, downloaded or cached, would be identical), and no socket
    may be opened while building."""
    import socket

    if name.startswith("timm:"):
        pytest.importorskip("timm")

    def no_network(*args, **kwargs):
        raise AssertionError(f"building {name} opened a network connection: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    weights = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=10, image_size=32)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()
                                  if p.dim() > 1]))
    assert weights[0].shape == weights[1].shape
    assert not torch.equal(weights[0], weights[1])

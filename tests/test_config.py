import pytest
import torch

from harness.core.config import RunConfig
from harness.core.suites import expand, load_suite, merge_settings
from harness.errors import UserError


def settings(**over):
    return merge_settings({}, over)


def test_sweep_is_the_cartesian_product():
    cfgs = expand(settings(models=["convnet", "resnet20"], devices=["cpu"], batch_sizes=[4, 8],
                           precisions=["fp32", "amp-bf16"], optimizers=["sgd", "adam", "adagrad"]))
    assert len(cfgs) == 2 * 2 * 2 * 3
    assert len(set(cfgs)) == len(cfgs)
    assert all(isinstance(c, RunConfig) for c in cfgs)


def test_amp_resolves_per_device_and_duplicates_collapse():
    cfgs = expand(settings(models=["convnet"], devices=["cpu"], precisions=["amp", "amp-bf16"]))
    assert [c.precision for c in cfgs] == ["amp-bf16"]


def test_each_model_takes_its_default_dataset_unless_one_of_its_task_is_named():
    cfgs = expand(settings(models=["convnet", "transformer"], devices=["cpu"],
                           datasets=["cifar10"]))
    assert {(c.model, c.dataset) for c in cfgs} == {
        ("convnet", "cifar10"), ("transformer", "synthetic-text")}


def test_default_lr_comes_from_the_model_family_and_lr_overrides():
    (sgd, adam) = expand(settings(models=["resnet20"], devices=["cpu"], optimizers=["sgd", "adam"]))
    assert (sgd.lr, adam.lr) == (0.05, 1e-3)
    (c,) = expand(settings(models=["resnet20"], devices=["cpu"], lr=0.3))
    assert c.lr == 0.3


def test_quick_suite_is_36_configs_with_transformer_overrides():
    cfgs = expand(merge_settings(load_suite("quick"), {"devices": ["cpu"]}))
    assert len(cfgs) == 36
    assert {c.batch_size for c in cfgs if c.model == "transformer"} == {8, 16}
    assert {c.batch_size for c in cfgs if c.model == "convnet"} == {32, 64}
    # a batch size given on the command line beats the suite's per-model override
    cfgs = expand(merge_settings(load_suite("quick"), {"devices": ["cpu"], "batch_sizes": [4]}))
    assert {c.batch_size for c in cfgs} == {4}


@pytest.mark.parametrize(
    "over, message",
    [
        ({"models": ["vgg"]}, "unknown model 'vgg'; valid: convnet, resnet18"),
        ({"optimizers": ["rmsprop"]}, "unknown optimizer 'rmsprop'; valid: sgd, adam, adagrad"),
        ({"precisions": ["fp8"]}, "unknown precision 'fp8'; valid: fp32, amp"),
        ({"datasets": ["imagenet"]}, "unknown dataset 'imagenet'; valid: synthetic, cifar10"),
        ({"devices": ["tpu"]}, "unknown device 'tpu'; valid: auto, cpu, cuda"),
        ({"batch_sizes": [0]}, "batch size must be > 0, got 0"),
        ({"steps": -1}, "steps must be > 0, got -1"),
        ({"repeats": 0}, "repeats must be > 0"),
    ],
)
def test_bad_input_is_a_user_error_naming_value_and_choices(over, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        expand(settings(**{"devices": ["cpu"], **over}))


def test_cuda_on_a_machine_without_a_gpu_is_a_user_error(monkeypatch):
    # needs "no GPU": forced here, so the test means the same on a GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="device 'cuda' is not available"):
        expand(settings(devices=["cuda"]))


def test_defaults_have_one_source_the_run_config():
    """A suite that sets nothing gets RunConfig's defaults (not a second table's)."""
    (c,) = expand(settings(models=["convnet"], devices=["cpu"]))
    expected = RunConfig(model="convnet", dataset="synthetic", device="cpu", lr=c.lr)
    assert c == expected
    assert c.lr == 0.05  # the convnet family's SGD default (models/convnet.py)


@pytest.mark.parametrize("text, message", [
    ('deterministic = "false"', "deterministic must be true or false"),
    ('compile = ["true"]', "compile must be true or false"),
    ('[model.convnet]\nchannels_last = "no"', "[model.convnet]: channels_last must be true"),
    ('[model.convnet]\ndevices = ["cpu"]', "'devices' applies to the whole sweep"),
    ('[model.convnet]\ndatasets = ["cifar10"]', "'datasets' applies to the whole sweep"),
    ('[model.convnet]\nfrobnicate = 1', "[model.convnet]: unknown key 'frobnicate'; valid"),
    ('[model.convnet]\nbatch_sizes = [4]\n[model.resnt20]\nsteps = 2', "[model.resnt20]"),
    ('steps = "10"', "steps must be an integer, got '10'"),
    ('warmup = true', "warmup must be an integer, got True"),
])
def test_suite_values_must_have_their_real_types(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text('models = ["convnet"]\ndevices = ["cpu"]\n' + text + "\n")
    with pytest.raises(UserError) as err:
        expand(merge_settings(load_suite(str(path)), {}))
    assert message in str(err.value)


def test_real_booleans_in_a_suite_are_honoured(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('models = ["convnet"]\ndevices = ["cpu"]\ndeterministic = false\n'
                    '[model.convnet]\nchannels_last = [false, true]\n')
    cfgs = expand(merge_settings(load_suite(str(path)), {}))
    assert [(c.deterministic, c.channels_last) for c in cfgs] == [(False, False), (False, True)]


def test_missing_and_malformed_suites(tmp_path):
    with pytest.raises(UserError, match="suite 'nope' not found.*valid: .*quick"):
        load_suite("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [convnet")
    with pytest.raises(UserError, match="malformed suite file"):
        load_suite(str(bad))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("modles = ['convnet']")
    with pytest.raises(UserError, match="unknown key 'modles'"):
        load_suite(str(unknown))

import pytest
import torch

from harness.cli import build_parser, main
from harness.cli.sweep_options import configs_from_args, run_arguments
from harness.core.config import DEFAULT_MIN_TIME_S, RunConfig, config_from_record
from harness.core.suites import expand, load_suite, merge_settings, suite_path
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
        ({"models": ["vgg"]}, "unknown model 'vgg'; valid: convnet, gpt2, resnet18"),
        ({"optimizers": ["rmsprop"]}, "unknown optimizer 'rmsprop'; valid: sgd, adam, adagrad"),
        ({"precisions": ["fp8"]}, "unknown precision 'fp8'; valid: fp32, amp"),
        ({"datasets": ["imagenet"]}, "unknown dataset 'imagenet'; valid: synthetic, cifar10"),
        ({"devices": ["tpu"]}, "unknown device 'tpu'; valid: auto, cpu, cuda"),
        ({"batch_sizes": [0]}, "batch size must be > 0, got 0"),
        ({"steps": -1}, "steps must be > 0, got -1"),
        ({"repeats": 0}, "repeats must be > 0"),
        ({"batch_sizes": ["max:0"]}, "batch size 'max:0': use an integer, max or max:LIMIT"),
        ({"batch_sizes": ["most"]}, "batch size 'most': use an integer, max or max:LIMIT"),
        ({"batch_sizes": ["max"]}, "batch size max on the CPU needs --memory-budget GiB"),
        ({"inputs": ["disk"]}, "unknown input 'disk'; valid: resident, loader"),
        ({"workers": [-1]}, "workers must be >= 0, got -1"),
        ({"transforms": "autoaugment"}, "unknown transforms 'autoaugment'; valid: standard"),
        ({"memory_budget": 0}, "memory budget must be a number of GiB > 0, got 0"),
        ({"models": ["transformer"], "inputs": ["loader"]},
         "input 'loader' is for image models; transformer is a language model"),
        ({"datasets": ["cifar10"], "image_size": 64},
         "cifar10 images are 32x32: --image-size 64 needs --input loader"),
        ({"datasets": ["cifar10"], "num_classes": 4}, "--num-classes sets the synthetic data's"),
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
    ('warmup = true', "warmup must be 'auto' or an integer >= 0, got True"),
    ('warmup = "often"', "warmup must be 'auto' or an integer >= 0, got 'often'"),
    ('warmup = 2.5', "warmup must be 'auto' or an integer >= 0, got 2.5"),
    ('min_time = "1s"', "min time must be a number of seconds >= 0, got '1s'"),
    ('min_time = -0.5', "min time must be a number of seconds >= 0, got -0.5"),
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


# ------------------------------------------------------- warm-up and minimum region time


def test_warmup_and_min_time_default_to_adaptive_and_the_device():
    (c,) = expand(settings(models=["convnet"], devices=["cpu"]))
    assert (c.warmup_steps, c.min_time_s) == (None, None)  # asked: adaptive, device default
    assert c.resolved_min_time_s() == DEFAULT_MIN_TIME_S["cpu"] == 0.0
    assert RunConfig("convnet", "synthetic", device="cuda:1").resolved_min_time_s() == 1.0
    assert RunConfig("convnet", "synthetic", device="mps").resolved_min_time_s() == 1.0
    assert RunConfig("convnet", "synthetic", device="cuda:0",
                     min_time_s=0.0).resolved_min_time_s() == 0.0


@pytest.mark.parametrize("flags, warmup, min_time", [
    ([], None, None),
    (["--warmup", "auto"], None, None),
    (["--warmup", "3"], 3, None),
    (["--warmup", "0", "--min-time", "0"], 0, 0.0),
    (["--min-time", "0.25"], None, 0.25),
])
def test_warmup_and_min_time_flags(flags, warmup, min_time):
    args = build_parser(["run"]).parse_args(["run", "--models", "convnet", "--devices", "cpu",
                                             "--batch-sizes", "4", "--precisions", "fp32",
                                             "--optimizers", "sgd", *flags])
    (c,) = configs_from_args(args)
    assert (c.warmup_steps, c.min_time_s) == (warmup, min_time)
    # the same choice as `trainmark run` arguments (for another tree) gives the same config
    forwarded = run_arguments(args, suite_path("quick"))
    assert configs_from_args(build_parser(["run"]).parse_args(["run", *forwarded])) == [c]


@pytest.mark.parametrize("flags, needle", [
    (["--warmup", "often"], "warmup must be 'auto' or an integer >= 0, got 'often'"),
    (["--warmup", "-1"], "warmup must be 'auto' or an integer >= 0, got -1"),
    (["--warmup", "2.5"], "warmup must be 'auto' or an integer >= 0, got '2.5'"),
    (["--min-time", "-1"], "min time must be a number of seconds >= 0, got -1.0"),
    (["--min-time", "nan"], "min time must be a number of seconds >= 0, got nan"),
    (["--min-time", "soon"], "argument --min-time: invalid float value: 'soon'"),
    (["--warmup", "0", "--compile"], "compile needs warmup 'auto' or >= 1"),
])
def test_bad_warmup_and_min_time_are_one_line_exit_2(flags, needle, capsys, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--models", "convnet", "--devices", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_suites_take_auto_or_a_count_and_per_model_values(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('models = ["convnet", "resnet20"]\ndevices = ["cpu"]\nwarmup = "auto"\n'
                    'min_time = 0.5\n[model.resnet20]\nwarmup = 4\nmin_time = 0\n')
    convnet, resnet = expand(merge_settings(load_suite(str(path)), {}))
    assert (convnet.warmup_steps, convnet.min_time_s) == (None, 0.5)
    assert (resnet.warmup_steps, resnet.min_time_s) == (4, 0.0)
    # a flag beats the suite, per-model tables included
    convnet, resnet = expand(merge_settings(load_suite(str(path)), {"warmup": "auto"}))
    assert convnet.warmup_steps is None and resnet.warmup_steps is None


def test_shipped_suites_warm_up_as_documented():
    def first(name):
        return expand(merge_settings(load_suite(name), {"devices": ["cpu"]}))[0]

    assert first("quick").warmup_steps is None and first("standard").warmup_steps is None
    assert first("ci").warmup_steps == 2 and first("smoke").warmup_steps == 1


def test_a_replay_runs_the_step_counts_the_record_ran():
    cfg = RunConfig("convnet", "synthetic", timed_steps=5, repeats=3)
    record = {**cfg.__dict__, "record_id": "r1", "warmup_rule": "adaptive",
              "warmup_steps_run": 16, "timed_steps_run": 40, "min_time_s_run": 1.0}
    again = config_from_record(record)
    assert (again.warmup_steps, again.timed_steps, again.min_time_s) == (16, 40, 0.0)
    assert again.repeats == 3 and again.model == "convnet"
    older = {k: v for k, v in record.items() if not k.endswith("_run")}  # before these fields
    assert config_from_record(older) == cfg


def test_default_learning_rates_scale_linearly_with_the_batch_where_declared():
    """Goyal et al.'s rule: ResNet-50's SGD rate is 0.1 per 256 images, so 0.1 x 8 / 256 =
    0.003125 at batch 8; ViT-B/16's Adam rate (DeiT) is 5e-4 per 512, so 1.25e-4 at 128. The
    CIFAR-sized models keep their rates at any batch, and an --lr given is never scaled."""
    def lrs(**over):
        cfgs = expand(merge_settings({}, {"devices": ["cpu"], "precisions": ["fp32"], **over}))
        return {(c.model, c.batch_size, c.optimizer): c.lr for c in cfgs}

    got = lrs(models=["resnet50", "vit_b_16", "convnet"], batch_sizes=[8, 128],
              optimizers=["sgd", "adam"])
    assert got[("resnet50", 8, "sgd")] == pytest.approx(0.003125)
    assert got[("resnet50", 128, "sgd")] == pytest.approx(0.05)
    assert got[("vit_b_16", 128, "adam")] == pytest.approx(1.25e-4)
    assert got[("convnet", 8, "sgd")] == got[("convnet", 128, "sgd")] == 0.05
    assert set(lrs(models=["resnet50"], batch_sizes=[8], lr=0.2).values()) == {0.2}

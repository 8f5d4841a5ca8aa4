import re

import pytest
import torch

from harness.cli import build_parser, main
from harness.cli.sweep_options import configs_from_args, run_arguments
from harness.core.config import (
    DEFAULT_MIN_TIME_S,
    MAX_BATCH_LIMIT,
    RunConfig,
    config_from_record,
)
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
        ({"models": ["vgg"]}, "unknown model 'vgg'; valid: convnet, gpt2, llama3-debug"),
        ({"optimizers": ["rmsprop"]}, "unknown optimizer 'rmsprop'; valid: sgd, adam, adagrad"),
        ({"precisions": ["fp4"]}, "unknown precision 'fp4'; valid: fp32, amp"),
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


# ------------------------------------------------- exact messages, edge values, normalisation


def test_a_single_value_in_a_suite_is_a_one_item_list(tmp_path):
    """Suites may write `batch_sizes = 16` instead of `[16]` (and a lone model name)."""
    path = tmp_path / "s.toml"
    path.write_text('models = "convnet"\ndevices = "cpu"\nbatch_sizes = 16\n'
                    'precisions = "fp32"\noptimizers = "adam"\n')
    (c,) = expand(merge_settings(load_suite(str(path)), {}))
    assert (c.model, c.device, c.batch_size, c.precision, c.optimizer) == (
        "convnet", "cpu", 16, "fp32", "adam")


@pytest.mark.parametrize("over, message", [
    # each message names the setting as the user knows it, and the value given
    ({"nproc": [0]}, "nproc must be > 0, got 0"),
    ({"compile": ["yes"]}, "compile must be true or false, got 'yes'"),
    ({"channels_last": [1]}, "channels_last must be true or false, got 1"),
    ({"deterministic": "yes"}, "deterministic must be true or false, got 'yes'"),
    ({"eval_samples": 0}, "eval samples must be > 0, got 0"),
    ({"train_samples": 0}, "train samples must be > 0, got 0"),
    ({"data_seed": -1}, "data seed must be >= 0, got -1"),
    ({"eval_interval": 0}, "eval interval must be > 0, got 0"),
    ({"max_steps": 0}, "max steps must be > 0, got 0"),
    ({"image_size": 0}, "image size must be > 0, got 0"),
    ({"num_classes": 0}, "num classes must be > 0, got 0"),
    ({"seq_len": 0}, "seq len must be > 0, got 0"),
    ({"seed": -1}, "seed must be >= 0, got -1"),
    ({"seeds": 0}, "seeds must be > 0, got 0"),
    ({"lr": 0}, "lr must be a number > 0, got 0"),
    ({"lr": -0.1}, "lr must be a number > 0, got -0.1"),
    ({"lr": True}, "lr must be a number > 0, got True"),
    ({"lr": "0.1"}, "lr must be a number > 0, got '0.1'"),
    # time-to-accuracy targets are fractions in (0, 1]: 0 and 1.5 are outside
    ({"target_accuracy": 0}, "target accuracy must be a fraction in (0, 1], got 0"),
    ({"target_accuracy": 1.5}, "target accuracy must be a fraction in (0, 1], got 1.5"),
    ({"target_accuracy": "0.9"}, "target accuracy must be a fraction in (0, 1], got '0.9'"),
    ({"target_accuracy": True}, "target accuracy must be a fraction in (0, 1], got True"),
    ({"memory_budget": "4"}, "memory budget must be a number of GiB > 0, got '4'"),
    ({"memory_budget": True}, "memory budget must be a number of GiB > 0, got True"),
    ({"memory_budget": float("inf")}, "memory budget must be a number of GiB > 0, got inf"),
    ({"memory_budget": -1}, "memory budget must be a number of GiB > 0, got -1"),
    ({"compile": [True], "warmup": 0},
     "compile needs warmup 'auto' or >= 1 so that compilation stays off the clock"),
    ({"batch_sizes": ["max"]}, "batch size max on the CPU needs --memory-budget GiB: no "
                               "out-of-memory error happens there to stop the search"),
])
def test_bad_settings_give_exactly_one_readable_message(over, message):
    with pytest.raises(UserError) as err:
        expand(settings(**{"models": ["convnet"], "devices": ["cpu"], **over}))
    assert str(err.value) == message


@pytest.mark.parametrize("target", [1, 0.9, 0.001])
def test_target_accuracy_in_the_half_open_unit_interval_is_accepted(target):
    (c,) = expand(settings(models=["convnet"], devices=["cpu"], target_accuracy=target))
    assert c.target_accuracy == target and isinstance(c.target_accuracy, float)


def test_valid_optional_settings_reach_the_config():
    (c,) = expand(settings(models=["convnet"], devices=["cpu"], train_samples=100,
                           num_classes=4, memory_budget=0.5, batch_sizes=[8]))
    assert (c.train_samples, c.num_classes, c.memory_budget_gib) == (100, 4, 0.5)
    assert isinstance(c.memory_budget_gib, float)
    (c,) = expand(settings(models=["convnet"], devices=["cpu"], memory_budget=2))
    assert c.memory_budget_gib == 2.0 and isinstance(c.memory_budget_gib, float)


@pytest.mark.parametrize("item, batch, limit", [
    ("max", 0, MAX_BATCH_LIMIT),  # no limit given: the documented default ceiling
    ("max:512", 0, 512),
    (" max:1 ", 0, 1),  # a limit of 1 is > 0, so valid
    (8, 8, None),
])
def test_batch_size_items(item, batch, limit):
    """`max[:LIMIT]` asks the search for the largest batch: batch size 0 until it runs."""
    (c,) = expand(settings(models=["convnet"], devices=["cpu"], batch_sizes=[item],
                           memory_budget=2))
    assert (c.batch_size, c.max_batch) == (batch, limit)


def test_settings_that_mean_nothing_for_a_config_take_their_defaults():
    # an image model has no context length; a language model no image size or classes
    (c,) = expand(settings(models=["convnet"], devices=["cpu"], seq_len=64))
    assert c.seq_len is None
    (t,) = expand(settings(models=["transformer"], devices=["cpu"], seq_len=64,
                           image_size=64, num_classes=4))
    assert (t.seq_len, t.image_size, t.num_classes) == (64, None, None)
    # resident inputs have no loader: workers and transforms collapse to one config
    (r,) = expand(settings(models=["convnet"], devices=["cpu"], workers=[0, 2],
                           transforms="totensor"))
    assert (r.input, r.workers, r.transforms) == ("resident", 0, "standard")
    loader = expand(settings(models=["convnet"], devices=["cpu"], inputs=["loader"],
                             workers=[0, 2], transforms="totensor"))
    assert [(c.workers, c.transforms) for c in loader] == [(0, "totensor"), (2, "totensor")]
    # --num-classes is for the synthetic data
    (s,) = expand(settings(models=["convnet"], devices=["cpu"], datasets=["synthetic"],
                           num_classes=4))
    assert (s.dataset, s.num_classes) == ("synthetic", 4)


def test_seeds_repeat_each_config_over_consecutive_seeds():
    cfgs = expand(settings(models=["convnet"], devices=["cpu"], seed=5, seeds=3))
    assert [c.seed for c in cfgs] == [5, 6, 7]  # range(5, 5 + 3)


def test_configs_carry_their_device_and_its_amp(monkeypatch):
    # a GPU machine, faked so the test means the same everywhere (no CUDA call is made)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfgs = expand(settings(models=["convnet"], devices=["cpu", "cuda"], precisions=["amp"]))
    # amp is bf16 on the CPU, fp16 on CUDA (harness.core.precision)
    assert [(c.device, c.precision) for c in cfgs] == [("cpu", "amp-bf16"),
                                                        ("cuda:0", "amp-fp16")]


def _valid_list(message):
    """The comma-separated choices at the end of a message ('valid: a, b' or 'valid here: ...')."""
    return re.split(r"valid(?: here)?: ", message)[-1].split(", ")


def test_suite_file_errors_name_the_file_and_the_valid_keys(tmp_path):
    def error(text):
        path = tmp_path / "s.toml"
        path.write_text(text)
        with pytest.raises(UserError) as err:
            load_suite(str(path))
        return str(err.value), f"suite {path.resolve()}"

    msg, where = error("modles = ['convnet']\n")
    assert msg.startswith(f"{where}: unknown key 'modles'; valid: ")
    valid = _valid_list(msg)
    assert valid == sorted(valid)
    assert {"models", "batch_sizes", "warmup", "description", "model"} <= set(valid)

    msg, where = error("deterministic = 'false'\n")
    assert msg == (f"{where}: deterministic must be true or false (a TOML boolean, unquoted), "
                   f"got 'false'")

    msg, where = error("model = 1\n")
    assert msg == f"{where}: 'model' must be tables such as [model.convnet]"
    msg, where = error("[model]\nconvnet = 1\n")
    assert msg == f"{where}: [model.convnet] must be a table of keys"

    # a per-model table may set every key except the sweep-wide axes
    for text, head in [("[model.convnet]\nmodels = ['x']\n",
                        "'models' applies to the whole sweep, not to one model; valid here: "),
                       ("[model.convnet]\nfrobnicate = 1\n", "unknown key 'frobnicate'; valid: ")]:
        msg, where = error(text)
        assert msg.startswith(f"{where}: [model.convnet]: {head}")
        valid = set(_valid_list(msg))
        assert {"batch_sizes", "precisions", "warmup", "lr", "seeds"} <= valid
        assert not valid & {"models", "devices", "datasets"}


def test_a_missing_suite_lists_the_shipped_ones():
    with pytest.raises(UserError) as err:
        suite_path("nope")
    valid = _valid_list(str(err.value))
    assert valid == sorted(valid)
    assert {"ci", "quick", "smoke", "standard"} <= set(valid)


def test_an_unknown_override_key_is_a_programming_error():
    """The CLI builds the overrides: a key no sweep knows is a KeyError, naming the valid ones."""
    with pytest.raises(KeyError) as err:
        merge_settings({}, {"modles": ["convnet"]})
    msg = err.value.args[0]
    assert msg.startswith("unknown sweep setting 'modles'; valid: ")
    assert {"models", "devices", "batch_sizes", "warmup", "lr"} <= set(_valid_list(msg))


def _suite_on(name, device):
    """The suite's configs as its ``auto`` device would give them on ``device`` (a CUDA
    machine is simulated by resolving device names only; nothing runs)."""
    from unittest import mock

    from harness.core import suites

    with mock.patch.object(suites, "resolve_device",
                           lambda d: device if d in ("auto", device) else d):
        return expand(merge_settings(load_suite(name), {}))


def test_the_gpu_suite_is_the_published_setups():
    """Issue 11's gpu suite: resnet50, vit_b_16, gpt2; fp32, amp-bf16, amp-fp16; sgd and adam.
    Its ResNet-50 rows are NVIDIA's and Lambda's setup: batch 256 per GPU on 3x224x224
    images of 1000 classes, synthetic data; GPT-2 small trains on 1,024-token sequences."""
    from models import get_model_info

    cfgs = _suite_on("gpu", "cuda")
    grid = {(c.model, c.precision, c.optimizer) for c in cfgs if c.model != "llama3.2-1b"}
    assert grid == {(m, p, o) for m in ("resnet50", "vit_b_16", "gpt2")
                    for p in ("fp32", "amp-bf16", "amp-fp16") for o in ("sgd", "adam")}
    assert len(cfgs) == 19 and {c.device for c in cfgs} == {"cuda"}
    # Issue 24: Llama 3.2 1B on one GPU, bf16, selective checkpointing, 2 x 8,192 tokens
    (llama,) = [c for c in cfgs if c.model == "llama3.2-1b"]
    assert (llama.precision, llama.optimizer, llama.activation_checkpointing, llama.parallel,
            llama.nproc, llama.batch_size, llama.seq_len) == (
        "amp-bf16", "adam", "selective", "ddp", 1, 2, None)
    assert get_model_info("llama3.2-1b").input_shape == (8192,)
    r50 = [c for c in cfgs if c.model == "resnet50"]
    assert {(c.batch_size, c.dataset, c.input) for c in r50} == {(256, "synthetic", "resident")}
    info = get_model_info("resnet50")
    assert (info.input_shape, info.num_classes) == ((3, 224, 224), 1000)
    assert all(c.image_size in (None, 224) and c.num_classes in (None, 1000) for c in r50)
    assert get_model_info("gpt2").input_shape == (1024,)
    assert all(c.seq_len in (None, 1024) for c in cfgs if c.model == "gpt2")


def test_the_gpu_node_suite_is_torchtitans_llama3_8b_setup():
    """torchtitan's table 1: Llama 3.1 8B, FSDP over 8 GPUs, 8,192 tokens, selective activation
    checkpointing; bf16, bf16 + compile, fp8 + compile (and fp8 alone). Local batch 1, not 2:
    torchtitan's batch-2 row reserved 82.4 GiB, more than an 80 GB H100 has (issue 29)."""
    cfgs = _suite_on("gpu-node", "cuda")
    assert {(c.precision, c.compile) for c in cfgs} == {
        (p, c) for p in ("amp-bf16", "fp8") for c in (False, True)}
    assert {(c.model, c.parallel, c.nproc, c.activation_checkpointing, c.batch_size, c.seq_len,
             c.device) for c in cfgs} == {
        ("llama3.1-8b", "fsdp", 8, "selective", 1, 8192, "cuda")}


def test_the_cpu_fsdp_suite_shards_llama3_debug_over_two_gloo_ranks():
    cfgs = _suite_on("cpu-fsdp", "cpu")
    assert {(c.model, c.nproc, c.device) for c in cfgs} == {("llama3-debug", 2, "cpu")}
    assert {(c.parallel, c.activation_checkpointing) for c in cfgs} == {
        (p, a) for p in ("ddp", "fsdp") for a in ("none", "selective")}
    assert all(c.needs_launcher for c in cfgs)


def test_parallel_and_checkpointing_axes_are_checked_and_fsdp_needs_no_second_process():
    (one,) = expand(merge_settings({}, {"models": ["llama3-debug"], "devices": ["cpu"],
                                        "precisions": ["fp32"], "optimizers": ["adam"],
                                        "batch_sizes": [2], "parallel": ["fsdp"],
                                        "activation_checkpointing": ["selective:3"]}))
    assert (one.nproc, one.parallel, one.activation_checkpointing) == (1, "fsdp", "selective:3")
    assert one.needs_launcher and "fsdp ac=selective:3" in one.label()
    for key, bad, names in (("parallel", "zero3", ["'zero3'", "ddp, fsdp"]),
                            ("activation_checkpointing", "selective:0",
                             ["'selective:0'", "none, selective, selective:N, full"])):
        with pytest.raises(UserError) as err:
            expand(merge_settings({}, {"models": ["llama3-debug"], key: [bad]}))
        assert all(n in str(err.value) for n in names), str(err.value)


def test_the_cpu_standard_suite_runs_the_same_models_small():
    cfgs = _suite_on("cpu-standard", "cpu")
    assert {c.model for c in cfgs} == {"resnet50", "vit_b_16", "gpt2"}
    assert {c.device for c in cfgs} == {"cpu"}
    # small batches at the models' real input sizes (no image_size / seq_len override)
    assert max(c.batch_size for c in cfgs) <= 8
    assert all(c.image_size is None and c.seq_len is None for c in cfgs)

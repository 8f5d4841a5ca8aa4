"""TensorBoard event files for records (optional dependency: ``pip install tensorboard``).

Written after a config finishes, from its stored record, so nothing touches the timed loop.
One run directory per record: ``DIR/<run_id>/<model>-<dataset>-bs<B>-<precision>-<opt>-s<seed>``.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.losscurve import curve_steps
from harness.errors import UserError


def check_available() -> None:
    """``UserError`` (before a sweep starts) if TensorBoard's writer cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install 'trainmark[tensorboard]'"
        ) from None


def run_dir(root: str | Path, rec: dict) -> Path:
    name = (f"{rec['model']}-{rec['dataset']}-bs{rec['batch_size']}-{rec['precision']}-"
            f"{rec['optimizer']}-s{rec['seed']}").replace(":", "_").replace("/", "_")
    return Path(root) / str(rec["run_id"]) / name


def write_record(root: str | Path, rec: dict) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    path = run_dir(root, rec)
    writer = SummaryWriter(log_dir=str(path))
    try:
        curve = rec.get("loss_curve") or []
        every = int(rec.get("loss_curve_every") or 1)
        for step, value in zip(curve_steps(len(curve), every), curve, strict=True):
            writer.add_scalar("train/loss", value, step)
        for i, tp in enumerate(rec.get("repeat_throughputs") or []):
            writer.add_scalar(f"throughput/{rec['throughput_unit']}", tp, i)
        for key in ("eval_loss", "eval_accuracy"):
            if rec.get(key) is not None:
                writer.add_scalar(f"eval/{key.removeprefix('eval_')}", rec[key], len(curve) * every)
        writer.add_text("config", f"`{rec['record_id']}` {rec['model']} on {rec['device_name']}")
    finally:
        writer.close()
    return path

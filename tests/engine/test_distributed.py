"""torchrun with the gloo backend: one run directory, DDP equivalence, sharded eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import TEST_CONFIGS, run_tool, tiny_train_overrides


def _losses(run_dir: Path) -> list[float]:
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.value for e in events.Scalars("train/loss")]


def _exact_data(*extra: str) -> list[str]:
    # Full-size crops with no rescale: no padding, so every pixel counts and a
    # per-rank mean loss averages to the global mean.
    return ["dataset.train.transforms.ratio_range=[1.0,1.0]", *extra]


@pytest.fixture(scope="module")
def torchrun_run(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo run on 2 gloo ranks under torchrun."""
    out = tmp_path_factory.mktemp("torchrun") / "ddp"
    result = run_tool("train.py", tiny_train_overrides(shapes_root, out), nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_process_run_shares_one_output_dir(torchrun_run: Path) -> None:
    out = torchrun_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.pth",
        "iter_0000002.pth",
        "iter_0000004.pth",
        "last.pth",
    ]
    assert len(list((out / "tb").glob("events.*"))) == 1
    assert (out / "train.log").read_text().count("validation at iteration 4") == 1
    ckpt = torch.load(out / "checkpoints/last.pth", weights_only=True)
    assert ckpt["iteration"] == 4 and len(ckpt["rng"]) == 2
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 6


def test_two_processes_match_one_process_with_twice_the_batch(
    shapes_root: Path, tmp_path: Path
) -> None:
    common = [TEST_CONFIGS, "model=tiny_gn", "trainer.val_interval=100", "trainer.max_iters=5"]
    one = tmp_path / "one"
    two = tmp_path / "two"
    r1 = run_tool(
        "train.py",
        tiny_train_overrides(shapes_root, one, *common, *_exact_data("trainer.batch_size=4")),
        nproc=1,
    )
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = run_tool(
        "train.py",
        tiny_train_overrides(shapes_root, two, *common, *_exact_data("trainer.batch_size=2")),
        nproc=2,
    )
    assert r2.returncode == 0, r2.stderr[-3000:]
    l1, l2 = _losses(one), _losses(two)
    assert len(l1) == len(l2) == 5
    assert l1 == pytest.approx(l2, abs=1e-5)
    assert l1[0] != pytest.approx(l1[-1], abs=1e-3)  # the weights did change


def test_two_process_eval_on_odd_count_equals_one_process(tmp_path: Path) -> None:
    from ann.data.synthetic import generate_shapes

    odd_root = generate_shapes(tmp_path / "odd", num_train=4, num_val=5, size=64, seed=3)
    run = tmp_path / "run"
    r = run_tool("train.py", tiny_train_overrides(odd_root, run, "trainer.max_iters=2"))
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = {}
    for nproc in (1, 2):
        out = tmp_path / f"eval{nproc}"
        r = run_tool(
            "eval.py",
            [
                "experiment=demo",
                f"dataset.root={odd_root}",
                f"checkpoint={run / 'checkpoints/last.pth'}",
                f"output_dir={out}",
                "evaluator.num_workers=0",
            ],
            nproc=nproc,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        metrics[nproc] = json.loads((out / "metrics.json").read_text())
    assert metrics[1]["num_images"] == 5
    assert metrics[1] == metrics[2]


@pytest.mark.timeout(300)
def test_submitit_local_two_tasks_match_torchrun(
    shapes_root: Path, tmp_path: Path, torchrun_run: Path
) -> None:
    """Hydra's submitit launcher, 2 tasks on this machine (gloo): the ranks
    find each other from submitit's job environment, share one run directory
    and end with torchrun's metrics.json exactly."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the [cluster] extra
    sweep = tmp_path / "sweep"
    overrides = tiny_train_overrides(shapes_root, tmp_path / "unused")
    launcher = [
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.nodes=1",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
    ]
    # -m runs a sweep: output_dir comes from the sweep directory, not the override.
    result = run_tool("train.py", [*launcher, *[o for o in overrides if "output_dir" not in o]])
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p.parent for p in sweep.rglob("metrics.json")]
    assert "on cpu x2" in (run / "train.log").read_text()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (torchrun_run / "checkpoints").iterdir()
    )
    ours = json.loads((run / "metrics.json").read_text())
    assert ours == json.loads((torchrun_run / "metrics.json").read_text())


# torchrun / several processes each importing torch: the integration tier.
pytestmark = pytest.mark.integration

"""The model registry: configs/zoo.yaml against docs/model_zoo.md, user
registries, ``tools/zoo.py list``, and ``Segmenter.from_pretrained`` against a
loopback HTTP server that the tests start (download with the hash checked,
convert once, cache, offline from the cache; a tampered or cut-off file
leaves nothing in the cache; no network gives one line within seconds)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from loopback import Server
from reference import mmseg_ann
from reference.published import save_mmseg
from reference.weights import randomise

from ann import Segmenter, list_models
from ann.commands.overrides import zoo_experiment_values
from ann.commands.zoo import main as zoo_main
from ann.errors import ConfigError
from ann.hub import zoo
from helpers import ROOT, compose_cfg, tiny_train_overrides

# A converted Cityscapes model evaluates at 2048×1024: the tests shrink the eval scale.
SMALL = ["dataset.scale=[128,64]"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def docs_rows() -> list[dict]:
    """The mmsegmentation table of docs/model_zoo.md with each row's wget URL."""
    text = (ROOT / "docs" / "model_zoo.md").read_text()
    pattern = r"^\| (\d+) \| ([^|]+) \| (R-\d+) \| (\d+)×(\d+) \| (\d+k) \| ([\d.]+) \| ([\d.]+) \| `(\w+)` \|$"
    rows = re.findall(pattern, text, re.M)
    urls = re.findall(r"^wget (\S+)$", text, re.M)
    assert len(rows) == len(urls) == 16
    names = {"Cityscapes": "cityscapes", "ADE20K": "ade20k", "VOC 2012 + aug": "voc_aug"}
    return [
        {
            "dataset": names[r[1].strip()],
            "backbone": r[2],
            "crop": [int(r[3]), int(r[4])],
            "schedule": r[5],
            "miou": {"ss": float(r[6]), "ms_flip": float(r[7])},
            "experiment": r[8],
            "url": url,
        }
        for r, url in zip(rows, urls, strict=True)
    ]


def test_registry_matches_docs_model_zoo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV, raising=False)
    entries = list_models()
    mmseg = [e for e in entries if e.source == "mmseg"]
    keys = ("dataset", "backbone", "crop", "schedule", "miou", "experiment", "url")
    assert [{k: e.as_dict()[k] for k in keys} for e in mmseg] == docs_rows()
    experiments = {p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")}
    for entry in mmseg:
        # mmsegmentation's file names end in the first 8 hex digits of the SHA-256.
        assert entry.url.endswith(f"-{entry.sha256}.pth") and len(entry.sha256) == 8
        assert entry.name in entry.url and entry.experiment in experiments
    (official,) = [e for e in entries if e.source == "official"]
    assert official.url is None and official.file == "fs_annn_cityscapes_segohem_latest.pth"
    assert official.experiment == "cityscapes_ann_official" and official.miou["ss"] == 79.9
    assert "79.9 mIoU" in (ROOT / "docs" / "model_zoo.md").read_text()
    assert len(entries) == 17


def test_each_entry_names_the_experiment_of_its_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fine-tuning from a zoo name trains with the entry's experiment, so that
    experiment's schedule is the published model's (80k for the 80k models)."""
    from ann.config.compose import compose

    monkeypatch.delenv(zoo.ENV, raising=False)
    for entry in list_models():
        cfg = compose("train", [f"experiment={entry.experiment}"])
        iters = cfg.trainer.max_iters
        assert f"{iters // 1000}k" == entry.schedule, (entry.name, entry.experiment, iters)


def test_zoo_list_tool(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV, raising=False)
    assert zoo_main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 17 and listed[0]["name"] == "ann_r50-d8_512x1024_40k_cityscapes"
    assert zoo_main(["list", "--dataset", "ade20k"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name",
        "dataset",
        "backbone",
        "crop",
        "iters",
        "mIoU",
        "ms+flip",
        "experiment",
        "url",
    ]
    assert len(lines) == 1 + 4 + 1 and "42.94" in lines[2] and "ade20k_ann_r101" in lines[2]
    assert zoo_main(["list", "--dataset", "cityscapes"]) == 0
    assert "no stable URL: place fs_annn" in capsys.readouterr().out
    assert zoo_main(["fetch", "ann_r50-d8_512x1024_40k_cityscape"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean ann_r50-d8_512x1024_40k_cityscapes" in err


def test_zoo_name_sets_the_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.ENV, raising=False)
    name = "zoo:ann_r101-d8_512x512_80k_ade20k"
    assert zoo_experiment_values([f"checkpoint={name}", "x=1"])[-1] == "experiment=ade20k_ann_r101"
    assert zoo_experiment_values([f"trainer.load_from={name}"])[-1] == "experiment=ade20k_ann_r101"
    given = [f"checkpoint={name}", "experiment=ade20k_ann"]
    assert zoo_experiment_values(given) == given
    assert zoo_experiment_values(["checkpoint=zoo:nope"]) == ["checkpoint=zoo:nope"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, str]]:
    """A random mmsegmentation ANN R-50 (Cityscapes) as a zoo file on a loopback server."""
    folder = tmp_path_factory.mktemp("served")
    ref = randomise(mmseg_ann.EncoderDecoder(depth=50, num_classes=19)).eval()
    tmp = save_mmseg(ref, folder / "tmp.pth")
    digest = sha256(tmp)
    path = tmp.rename(folder / f"ann_r50_tiny_20260101-{digest[:8]}.pth")
    server = Server(folder)
    yield server, path, digest
    server.stop()


def write_registry(path: Path, entries: dict[str, dict]) -> Path:
    lines = ["models:"]
    for name, keys in entries.items():
        lines.append(f"  {name}:")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def entry(url: str, sha: str | None) -> dict:
    return {
        "source": "mmseg",
        "url": url,
        "sha256": sha,
        "experiment": "cityscapes_ann",
        "dataset": "mine",
    }


@pytest.mark.timeout(300)
def test_from_pretrained_downloads_converts_caches_and_works_offline(
    served: tuple[Server, Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
) -> None:
    server, path, digest = served
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    registry = write_registry(
        path.parent / "my_models.yaml",  # served too: a remote registry
        {
            "mine": entry(f"{server.url}/{path.name}", digest),
            "prefix_only": entry(f"{server.url}/{path.name}", None),  # the name's 8 digits
        },
    )
    monkeypatch.setenv(zoo.ENV, f"{server.url}/{registry.name}")
    assert [e.name for e in list_models("mine")] == ["mine", "prefix_only"]
    seg = Segmenter.from_pretrained("mine", device="cpu", overrides=SMALL)
    assert "100%" in capfd.readouterr().err  # torch.hub's progress bar
    cache = zoo.cache_dir()
    files = sorted(p.name for p in cache.iterdir() if p.is_file())
    assert files == sorted([path.name, f"{path.stem}.ann.pth"])
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = seg.predict(image)
    assert mask.shape == (40, 56) and len(seg.classes) == 19
    server.stop()  # offline now: the registry's copy and the converted file serve
    again = Segmenter.from_pretrained("mine", device="cpu", overrides=SMALL)
    np.testing.assert_array_equal(again.predict(image), mask)
    # The download may go: the converted file alone serves every later load.
    (cache / path.name).unlink()
    np.testing.assert_array_equal(
        Segmenter.from_pretrained("prefix_only", overrides=SMALL).predict(image), mask
    )


@pytest.mark.timeout(120)
def test_wrong_hash_and_cut_download_leave_no_file(
    served: tuple[Server, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path, digest = served
    if not server.thread.is_alive():
        server = Server(path.parent)  # the test above stopped the module's server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    plain = path.with_name("plain.pth")
    if not plain.exists():
        plain.hardlink_to(path)
    tampered = "0" * 64 if digest[0] != "0" else "f" * 64
    registry = write_registry(
        tmp_path / "bad.yaml",
        {
            "tampered": entry(f"{server.url}/{path.name}", tampered),
            # No hash anywhere (not even in the name): only the length tells.
            "cut": entry(f"{server.url}/cut/{plain.name}", None),
        },
    )
    monkeypatch.setenv(zoo.ENV, str(registry))
    try:
        with pytest.raises(ConfigError) as err:
            Segmenter.from_pretrained("tampered")
        assert (
            "\n" not in str(err.value)
            and "damaged" in str(err.value)
            and "invalid hash" in str(err.value)
        )
        assert list(zoo.cache_dir().iterdir()) == []
        with pytest.raises(ConfigError) as err:
            Segmenter.from_pretrained("cut")
        assert "\n" not in str(err.value) and "incomplete or damaged" in str(err.value)
        assert list(zoo.cache_dir().iterdir()) == []
    finally:
        server.stop()


def test_no_network_is_one_line_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    url = f"http://127.0.0.1:{free_port()}/ann_r50-d8_x_20200605_095211-049fc292.pth"
    monkeypatch.setenv(
        zoo.ENV, str(write_registry(tmp_path / "r.yaml", {"away": entry(url, None)}))
    )
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        Segmenter.from_pretrained("away")
    assert time.monotonic() - start < 10
    message = str(err.value)
    target = zoo.cache_dir() / Path(url).name
    assert "\n" not in message and url in message and f"place a copy at {target}" in message
    assert list(zoo.cache_dir().iterdir()) == []


def test_file_without_url_says_where_to_place_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(zoo.ENV, raising=False)
    with pytest.raises(ConfigError) as err:
        Segmenter.from_pretrained("annn_r101_cityscapes_official")
    target = zoo.cache_dir() / "fs_annn_cityscapes_segohem_latest.pth"
    assert f"no file at {target}" in str(err.value) and "github.com/MendelXu/ANN" in str(err.value)


def test_user_registry_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yaml"
    for text, expected in [
        ("models:\n  x: {source: caffe, url: a.pth, experiment: demo}\n", "source must be one of"),
        ("models:\n  x: {source: ann, url: a.pth}\n", "missing key(s) ['experiment']"),
        (
            "models:\n  x: {source: ann, url: a.pth, experiment: demo, colour: red}\n",
            "unknown key(s)",
        ),
        ("- just a list\n", "top-level 'models:'"),
    ]:
        bad.write_text(text)
        monkeypatch.setenv(zoo.ENV, str(bad))
        with pytest.raises(ConfigError, match=re.escape(expected)):
            list_models()
    monkeypatch.setenv(zoo.ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="could not read the model registry"):
        list_models()


def test_user_registry_paths_and_file_urls(
    trained_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain paths resolve against the registry's folder; file:// URLs work; source ann is used as is."""
    ckpt = trained_demo / "checkpoints" / "best.pth"
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "best.pth").write_bytes(ckpt.read_bytes())
    demo = {"source": "ann", "experiment": "demo", "dataset": "shapes"}
    registry = write_registry(
        folder / "zoo.yaml",
        {
            "relative": {**demo, "url": "best.pth", "sha256": sha256(ckpt)},
            "file_url": {**demo, "url": ckpt.as_uri()},
            "wrong_hash": {**demo, "url": "best.pth", "sha256": "0" * 8},
        },
    )
    monkeypatch.setenv(zoo.ENV, registry.as_uri())
    assert zoo.pretrained_checkpoint("relative") == folder / "best.pth"
    assert zoo.pretrained_checkpoint("zoo:file_url") == ckpt
    if not sha256(ckpt).startswith("0" * 8):
        with pytest.raises(Exception, match="does not start with the registry's 00000000"):
            zoo.pretrained_checkpoint("wrong_hash")
    a = Segmenter.from_pretrained("relative", device="cpu")
    b = Segmenter.from_checkpoint("zoo:file_url", device="cpu")
    image = np.full((32, 48, 3), 200, np.uint8)
    np.testing.assert_array_equal(a.predict(image), b.predict(image))
    assert torch.equal(
        a.model.state_dict()["decode_head.classifier.weight"],
        b.model.state_dict()["decode_head.classifier.weight"],
    )


def demo_registry(folder: Path, ckpt: Path) -> Path:
    """A user registry naming the trained demo checkpoint (this project's format)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"source": "ann", "url": ckpt.as_uri(), "experiment": "demo", "dataset": "shapes"}
    return write_registry(folder / "team.yaml", {"team_demo": spec})


def test_load_from_a_zoo_name_fine_tunes(
    trained_demo: Path, shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ann.commands.train import train

    ckpt = trained_demo / "checkpoints" / "best.pth"
    monkeypatch.setenv(zoo.ENV, str(demo_registry(tmp_path / "zoo", ckpt)))
    out = tmp_path / "run"
    extra = ["trainer.load_from=zoo:team_demo", "trainer.max_iters=1", "trainer.val_interval=1"]
    train(compose_cfg(tiny_train_overrides(shapes_root, out, *extra)))
    assert (
        f"loaded weights from {ckpt} (fine-tuning from iteration 0)"
        in (out / "train.log").read_text()
    )


def test_eval_without_experiment_uses_the_checkpoints_config(
    trained_demo: Path, shapes_root: Path, tmp_path: Path
) -> None:
    """tools/eval.py's body as the tool runs it, given only checkpoint= (and the data's keys)."""
    from ann.commands import eval as eval_command

    ckpt = trained_demo / "checkpoints" / "best.pth"
    given = [f"checkpoint={ckpt}", f"output_dir={tmp_path}", f"dataset.root={shapes_root}"]
    metrics = eval_command.evaluate(compose_cfg(given, "eval"), given)  # composed: ann_r50
    assert metrics["num_images"] == 6
    saved = (tmp_path / "config.yaml").read_text()
    assert "depth: 18" in saved and f"root: {shapes_root}" in saved


def test_eval_without_experiment_writes_beside_the_run(
    trained_demo: Path, shapes_root: Path, tmp_path: Path
) -> None:
    """Given only checkpoint=, the outputs go under the run's name (demo), not
    the tool's (outputs/eval/eval); name= still wins."""
    from ann.commands import eval as eval_command

    ckpt = trained_demo / "checkpoints" / "best.pth"
    given = [f"checkpoint={ckpt}", f"paths.output_root={tmp_path}", f"dataset.root={shapes_root}"]
    eval_command.evaluate(compose_cfg(given, "eval"), given)
    assert (tmp_path / "demo" / "eval" / "metrics.json").is_file()
    named = [*given, "name=mine"]
    eval_command.evaluate(compose_cfg(named, "eval"), named)
    assert (tmp_path / "mine" / "eval" / "metrics.json").is_file()


def test_a_checkpoint_file_alone_names_the_tools_run(trained_demo: Path) -> None:
    """Hydra makes the output folder before the command runs, so the tools'
    command line gets the checkpoint's run name first (outputs/demo/eval)."""
    from ann.commands.overrides import run_name_values

    ckpt = f"checkpoint={trained_demo / 'checkpoints' / 'best.pth'}"
    assert run_name_values("eval.py", [ckpt]) == [ckpt, "name=demo"]
    assert run_name_values("infer.py", [ckpt, "input=x.png"])[-1] == "name=demo"
    for given in (["experiment=demo"], ["name=mine"], ["output_dir=/tmp/o"]):
        assert run_name_values("eval.py", [ckpt, *given]) == [ckpt, *given]
    assert run_name_values("train.py", [ckpt]) == [ckpt]
    for other in ("checkpoint=zoo:x", "checkpoint=/no/such.pth"):
        assert run_name_values("eval.py", [other]) == [other]

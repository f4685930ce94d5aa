"""train_lung.py --inspect and train_lung.py saliency: the files, their contents, atomic writes, resume, refusals."""
import csv
import importlib.util
import os

import numpy
import pytest
from PIL import Image

from minidl.training import TrainConfig
from minidl.training.inspection import INSPECTION_FILES, InspectedTrainer
from minidl.training.inspection_plots import plot_gradient_flow, read_layer_stats, write_layer_stats
from minidl.training.loop import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_lung.py")
_spec = importlib.util.spec_from_file_location("train_lung", SCRIPT)
train_lung = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_lung)

TINY = ["--size", "32", "--synthetic-count", "10", "--init-features", "2", "--batch-size", "4", "--quiet",
        "--no-cache"]


def rows_of(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def inspected_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("inspected") / "run")
    assert train_lung.main(TINY + ["--epochs", "2", "--inspect", "--out", run_dir]) == 0
    return run_dir


def test_inspect_writes_every_file_non_empty(inspected_run):
    for name in INSPECTION_FILES:
        path = os.path.join(inspected_run, name)
        assert os.path.getsize(path) > 1000 if name.endswith(".png") else os.path.getsize(path) > 100
        if name.endswith(".png"):
            with Image.open(path) as picture:
                assert picture.size[0] > 500 and picture.getextrema()[0][0] < picture.getextrema()[0][1]
    assert not [name for name in os.listdir(inspected_run) if name.startswith(".tmp")]


def test_layer_stats_has_a_row_per_epoch_and_layer_in_forward_order(inspected_run):
    rows = rows_of(os.path.join(inspected_run, "layer_stats.csv"))
    layers = [row["layer"] for row in rows if row["epoch"] == "1"]
    assert layers[:3] == ["enc1.conv", "enc1.relu", "pool1"] and layers[-1] == "out"
    assert [row["layer"] for row in rows if row["epoch"] == "2"] == layers and len(rows) == 2 * len(layers)
    relu = next(row for row in rows if row["layer"] == "enc1.relu")
    assert relu["type"] == "ReLU" and 0.0 <= float(relu["zero_fraction"]) <= 1.0 and relu["weight_grad_norm"] == ""
    conv = next(row for row in rows if row["layer"] == "enc2.conv")
    for column in ("grad_input_norm", "weight_norm", "weight_grad_norm", "weight_update_ratio", "bias_update_ratio"):
        assert 0.0 < float(conv[column]) < 1e3, column


def test_the_table_holds_the_means_of_the_steps(tmp_path, monkeypatch):
    config = TrainConfig(synthetic_count=10, size=32, init_features=2, batch_size=4, epochs=1)
    trainer = InspectedTrainer(config, str(tmp_path), log=lambda line: None, progress=False)
    steps = []
    end_step = trainer.inspector.end_step
    monkeypatch.setattr(trainer.inspector, "end_step", lambda: steps.append(end_step()) or steps[-1])
    images = numpy.random.default_rng(0).random((8, 1, 32, 32)).astype(numpy.float32)
    masks = (images > 0.5).astype(numpy.float32)
    trainer.fit({"train": (images[:6], masks[:6]), "val": (images[6:], masks[6:])})
    assert len(steps) == 2
    (epoch, table), = read_layer_stats(str(tmp_path / "layer_stats.csv"), 1)
    for (layer, statistic) in [("enc3.conv", "weight_grad_norm"), ("dec2.relu", "zero_fraction"),
                               ("enc1.conv", "grad_input_norm"), ("out", "bias_update_ratio")]:
        expected = (steps[0][layer, statistic] + steps[1][layer, statistic]) / 2
        assert table[layer][statistic] == pytest.approx(expected, rel=1e-5)


def test_without_inspect_no_hook_and_no_file(tmp_path):
    trainer = Trainer(TrainConfig(size=32, init_features=2), str(tmp_path), progress=False)
    assert all("forward" not in vars(module) and "backward" not in vars(module) for module in trainer.model.modules())
    run_dir = str(tmp_path / "plain")
    assert train_lung.main(TINY + ["--epochs", "1", "--out", run_dir]) == 0
    assert "history.csv" in os.listdir(run_dir) and not set(INSPECTION_FILES) & set(os.listdir(run_dir))


def test_a_write_stopped_before_the_rename_keeps_the_old_files(inspected_run, tmp_path, monkeypatch):
    epochs = read_layer_stats(os.path.join(inspected_run, "layer_stats.csv"), 2)
    for name, write in (("layer_stats.csv", lambda path: write_layer_stats(epochs, {}, path)),
                        ("gradient_flow.png", lambda path: plot_gradient_flow(epochs, path))):
        path = str(tmp_path / name)
        with open(path, "wb") as stream:
            stream.write(b"old")

        def killed(descriptor):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "fsync", killed)
        with pytest.raises(KeyboardInterrupt):
            write(path)
        monkeypatch.undo()
        with open(path, "rb") as stream:
            assert stream.read() == b"old"
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp")]


def test_a_resumed_run_keeps_the_earlier_epochs_rows(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert train_lung.main(TINY + ["--epochs", "1", "--inspect", "--out", run_dir]) == 0
    first = rows_of(os.path.join(run_dir, "layer_stats.csv"))
    assert train_lung.main(["--resume", run_dir, "--epochs", "2", "--inspect", "--quiet"]) == 0
    rows = rows_of(os.path.join(run_dir, "layer_stats.csv"))
    assert [row for row in rows if row["epoch"] == "1"] == first
    assert len(rows) == 2 * len(first)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_inspect_with_predict_or_evaluate_is_a_one_line_error(command, inspected_run, tmp_path, capsys):
    status = train_lung.main([command, "--checkpoint", inspected_run, "--inspect", "--out", str(tmp_path), "x.png"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"--inspect watches training; {command} does not train" in err and "saliency" in err


def test_saliency_writes_a_map_per_image(inspected_run, tmp_path, capsys):
    image_path = str(tmp_path / "chest.png")
    Image.fromarray((numpy.random.default_rng(0).random((40, 48)) * 255).astype(numpy.uint8)).save(image_path)
    out = tmp_path / "maps"
    assert train_lung.main(["saliency", "--checkpoint", inspected_run, "--out", str(out), image_path]) == 0
    assert f"wrote 1 saliency map to {out}" in capsys.readouterr().out
    with Image.open(out / "chest_saliency.png") as picture:
        assert picture.size[0] > 200


def test_saliency_of_a_missing_image_is_a_one_line_error(inspected_run, tmp_path, capsys):
    status = train_lung.main(["saliency", "--checkpoint", inspected_run, "--out", str(tmp_path / "o"),
                              str(tmp_path / "nothing.png")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "nothing.png" in err
    assert not os.path.exists(tmp_path / "o")


def test_inspect_does_not_change_what_is_trained(tmp_path):
    """Same weights, optimizer state and batch-norm statistics with and without --inspect (its saliency panel
    runs the model in eval mode and puts the gradients back)."""
    import minidl
    runs = [str(tmp_path / name) for name in ("watched", "plain")]
    for run_dir, extra in zip(runs, (["--inspect"], [])):
        assert train_lung.main(TINY + ["--model", "segnet_basic", "--epochs", "2", "--out", run_dir] + extra) == 0
    watched, unwatched = (minidl.load(os.path.join(run, "last.npz")) for run in runs)
    weights = [key for key in unwatched if key.startswith(("model.", "optim."))]
    assert any(key.endswith("running_var") for key in weights)
    for key in weights:
        numpy.testing.assert_array_equal(watched[key], unwatched[key], err_msg=key)


def test_inspect_with_make_synthetic_is_a_one_line_error(tmp_path, capsys):
    status = train_lung.main(["--make-synthetic", str(tmp_path / "set"), "4", "--inspect"])
    err = capsys.readouterr().err
    assert status == 2 and "--inspect watches training; --make-synthetic only writes a dataset" in err
    assert not os.path.exists(tmp_path / "set")


def test_saliency_never_replaces_a_file_unless_told(inspected_run, tmp_path, capsys):
    image_path = str(tmp_path / "chest.png")
    Image.fromarray((numpy.random.default_rng(0).random((40, 48)) * 255).astype(numpy.uint8)).save(image_path)
    out = tmp_path / "maps"
    out.mkdir()
    (out / "chest_saliency.png").write_bytes(b"mine")
    command = ["saliency", "--checkpoint", inspected_run, "--out", str(out), image_path]
    status = train_lung.main(command)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"--out already holds {out / 'chest_saliency.png'}" in err and "--overwrite" in err
    assert (out / "chest_saliency.png").read_bytes() == b"mine"
    assert train_lung.main(command + ["--overwrite"]) == 0
    assert (out / "chest_saliency.png").read_bytes() != b"mine"

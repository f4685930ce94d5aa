"""train_lung.py end to end on tiny runs: outputs, resume to identical weights, Ctrl-C, NaN, predict,
evaluate, every model, and every kind of bad input (one-line error, exit status 2)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy
import pytest
from PIL import Image

import minidl
from minidl.backend import gpu_available
from minidl.data import write_layout
from minidl.data.components import label_components
from minidl.training import MODEL_STRIDES, TrainConfig, dice_and_iou, load_trained_model
from minidl.training import inference
from minidl.training import loop as loop_module

from cli_helpers import (ROOT, SCRIPT, TINY, history_of, long_run_with_a_checkpoint, run_main,
                         temporary_files, train_lung)

OUTPUTS = ("best.npz", "last.npz", "history.csv", "curves.png", "predictions.png")


def saved_state(path, prefixes=("model.", "optim.")):
    state = minidl.load(path)
    return {key: value for key, value in state.items() if key.startswith(prefixes)}


def assert_same_state(first, second):
    assert first.keys() == second.keys() and first
    for key in first:
        numpy.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 3-epoch tiny run shared by the tests that only read its outputs."""
    run_dir = str(tmp_path_factory.mktemp("run") / "tiny")
    assert train_lung.main(TINY + ["--epochs", "3", "--out", run_dir]) == 0
    return run_dir


def test_tiny_run_lowers_the_loss_and_writes_every_output(trained_run):
    for name in OUTPUTS:
        assert os.path.getsize(os.path.join(trained_run, name)) > 0, name
    rows = history_of(trained_run)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    # the validation loss: the training loss of 9 steps is dominated by each batch's augmentation
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    for row in rows:
        assert 0.0 <= float(row["val_dice"]) <= 1.0 and 0.0 <= float(row["val_iou"]) <= float(row["val_dice"])
    with Image.open(os.path.join(trained_run, "curves.png")) as picture:
        assert picture.size[0] > 300
    assert not temporary_files(trained_run)


def test_checkpoint_holds_weights_optimizer_rng_and_config_without_pickle(trained_run):
    with numpy.load(os.path.join(trained_run, "last.npz"), allow_pickle=False) as archive:
        keys = set(archive.files)
        config = TrainConfig.from_json(str(archive["config"]))
        assert int(archive["epoch"]) == 3 and int(archive["step"]) == 0
        assert archive["rng.state"].dtype == numpy.uint64 and archive["rng.state"].shape == (4,)
    assert "model.enc1.conv.weight" in keys and "optim.group.0.lr" in keys
    assert any(key.startswith("optim.state.") for key in keys)
    assert (config.model, config.size, config.init_features, config.epochs) == ("segnet_small", 32, 4, 3)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, capsys):
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    assert run_main(TINY + ["--epochs", "2", "--out", straight], capsys)[0] == 0
    assert run_main(TINY + ["--epochs", "1", "--out", stopped], capsys)[0] == 0
    status, out, _ = run_main(["--resume", stopped, "--epochs", "2", "--quiet"], capsys)
    assert status == 0 and "resuming" in out
    assert_same_state(saved_state(os.path.join(straight, "last.npz")), saved_state(os.path.join(stopped, "last.npz")))
    columns = ("train_loss", "val_loss", "val_dice")
    assert [[row[c] for c in columns] for row in history_of(straight)] == \
        [[row[c] for c in columns] for row in history_of(stopped)]



def saved_engine(run_dir):
    with numpy.load(os.path.join(run_dir, "last.npz"), allow_pickle=False) as archive:
        return TrainConfig.from_json(str(archive["config"])).engine


def test_the_engine_is_saved_with_the_run_and_a_resume_keeps_it_unless_given(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    status, out, _ = run_main(TINY + ["--epochs", "1", "--engine", "reference", "--out", run_dir], capsys)
    assert status == 0 and "reference engine" in out and saved_engine(run_dir) == "reference"
    minidl.set_engine("fast")
    status, out, _ = run_main(["--resume", run_dir, "--epochs", "2", "--quiet"], capsys)
    assert status == 0 and "reference engine" in out and saved_engine(run_dir) == "reference"
    status, out, _ = run_main(["--resume", run_dir, "--epochs", "3", "--engine", "fast", "--quiet"], capsys)
    assert status == 0 and "fast engine" in out and saved_engine(run_dir) == "fast"
    status, _, err = run_main(TINY + ["--engine", "slow", "--out", str(tmp_path / "bad")], capsys)
    assert status == 2 and "--engine slow: choose reference or fast" in err


@pytest.mark.parametrize("stop_signal, status_wanted, said", [(signal.SIGINT, 130, "interrupted in"),
                                                               (signal.SIGTERM, 143, "interrupted by SIGTERM in")])
def test_ctrl_c_mid_epoch_saves_and_resumes_to_the_same_weights(tmp_path, capsys, monkeypatch, stop_signal,
                                                                status_wanted, said):
    straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
    assert run_main(TINY + ["--epochs", "2", "--out", straight], capsys)[0] == 0
    original_step, calls = loop_module.Trainer._train_step, []

    def step_then_press_ctrl_c(self, *args):
        calls.append(args)
        if len(calls) == 5:  # epoch 2, second step (three batches per epoch)
            os.kill(os.getpid(), stop_signal)
        return original_step(self, *args)

    monkeypatch.setattr(loop_module.Trainer, "_train_step", step_then_press_ctrl_c)
    status, _, err = run_main(TINY + ["--epochs", "2", "--out", interrupted], capsys)
    assert status == status_wanted and f"{said} epoch 2 after step 2" in err
    assert int(minidl.load(os.path.join(interrupted, "last.npz"))["step"]) == 2
    monkeypatch.setattr(loop_module.Trainer, "_train_step", original_step)
    assert run_main(["--resume", os.path.join(interrupted, "last.npz"), "--quiet"], capsys)[0] == 0
    assert_same_state(saved_state(os.path.join(straight, "last.npz")),
                      saved_state(os.path.join(interrupted, "last.npz")))


def test_sigint_to_the_process_exits_130_with_a_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    process = long_run_with_a_checkpoint(run_dir)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert minidl.load(os.path.join(run_dir, "last.npz"))["epoch"] >= 1


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    run_dir = str(tmp_path / "run")
    original_build, calls = loop_module.build_loss, []

    class PoisonedAtFifthStep:
        def __init__(self, name):
            self.inner = original_build(name)

        def __call__(self, logits, target):
            value = self.inner(logits, target)
            if minidl.is_grad_enabled():
                calls.append(value)
                if len(calls) == 5:
                    return float("nan")
            return value

        def backward(self):
            return self.inner.backward()

    monkeypatch.setattr(loop_module, "build_loss", PoisonedAtFifthStep)
    status, _, err = run_main(TINY + ["--epochs", "3", "--out", run_dir], capsys)
    assert status == 1 and "the loss became nan at epoch 2, step 2" in err and "last.npz" in err
    assert int(minidl.load(os.path.join(run_dir, "last.npz"))["epoch"]) == 1


def test_predict_writes_mask_and_overlay_at_the_original_size(trained_run, tmp_path, capsys):
    images = []
    for index, (width, height) in enumerate([(48, 40), (32, 32)]):
        path = str(tmp_path / f"x{index}.png")
        Image.fromarray(numpy.random.default_rng(index).integers(0, 255, (height, width), numpy.uint8)).save(path)
        images.append(path)
    out = str(tmp_path / "predicted")
    status, stdout, _ = run_main(["predict", "--checkpoint", os.path.join(trained_run, "best.npz"), *images,
                                  "--out", out], capsys)
    assert status == 0 and "wrote 4 files" in stdout
    with Image.open(os.path.join(out, "x0_mask.png")) as mask, Image.open(os.path.join(out, "x0_overlay.png")) as ov:
        assert mask.size == (48, 40) and ov.size == (48, 40) and ov.mode == "RGB"
        assert set(numpy.unique(numpy.asarray(mask))) <= {0, 255}
    assert os.path.exists(os.path.join(out, "x1_mask.png")) and not temporary_files(out)


def test_predict_cleans_masks_unless_told_not_to_and_says_how_much(trained_run, tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "x.png")
    Image.fromarray(numpy.zeros((64, 64), numpy.uint8)).save(path)
    probability = numpy.zeros((1, 32, 32), numpy.float32)
    probability[:, 4:28, 3:13] = probability[:, 5:27, 18:28] = 0.9  # two lungs, 240 and 220 pixels
    probability[:, 10:12, 6:8] = 0.1                                # a hole of 4 pixels
    probability[:, 30:32, 0:2] = 0.8                                # a speck of 4 pixels
    monkeypatch.setattr(inference, "predict_probabilities", lambda *args, **kwargs: probability.copy())
    masks, printed = {}, {}
    for flag in ("--postprocess", "--no-postprocess"):
        out = str(tmp_path / flag)
        status, printed[flag], _ = run_main(["predict", "--checkpoint", trained_run, path, "--out", out, flag],
                                            capsys)
        assert status == 0
        with Image.open(os.path.join(out, "x_mask.png")) as picture:
            masks[flag] = numpy.asarray(picture) > 0
    assert "postprocessing" not in printed["--no-postprocess"]
    assert "changed 1 of 1 masks, by 1.7% of the lung area on average, at most 1.7% (x.png)" in printed["--postprocess"]
    cleaned, raw = masks["--postprocess"], masks["--no-postprocess"]
    assert raw[60:64, 0:4].any() and not cleaned[56:64, 0:8].any()  # the speck, at twice the size
    assert not raw[21:23, 13:15].any() and cleaned[18:26, 10:18].all()  # the hole
    labels = label_components(cleaned)
    assert len(numpy.unique(labels[labels >= 0])) == 2


def test_make_synthetic_writes_the_kaggle_layout(tmp_path, capsys):
    data = str(tmp_path / "kaggle")
    status, out, _ = run_main(["--make-synthetic", data, "2"], capsys)
    assert status == 0 and "Kaggle layout" in out
    assert len(os.listdir(os.path.join(data, "Lung Segmentation", "masks"))) == 2


def expected_dice_and_iou(checkpoint, image_dir, mask_dir):
    """Per-image Dice and IoU (arrays, in file-name order) of a segnet_small checkpoint on 8-bit PNG pairs,
    computed without minidl.training and without postprocessing."""
    import models

    state = minidl.load(checkpoint)
    config = TrainConfig.from_json(str(state["config"]))
    model = models.SegNetSmall(1, 1, init_features=config.init_features)
    model.load_state_dict({key[len("model."):]: value for key, value in state.items() if key.startswith("model.")})
    model.eval()
    dices, ious = [], []
    for name in sorted(os.listdir(image_dir)):
        with Image.open(os.path.join(image_dir, name)) as picture:
            image = (numpy.asarray(picture, numpy.float64) / 255).astype(numpy.float32)
        with Image.open(os.path.join(mask_dir, name.replace(".png", "_mask.png"))) as picture:
            true_pixels = set(zip(*numpy.nonzero(numpy.asarray(picture) >= 128)))
        with minidl.no_grad():
            logits = model(image[None, None])
        predicted_pixels = set(zip(*numpy.nonzero(logits[0, 0] >= 0)))  # sigmoid(logit) >= 0.5
        overlap, union = predicted_pixels & true_pixels, predicted_pixels | true_pixels
        sizes = len(predicted_pixels) + len(true_pixels)
        dices.append(2 * len(overlap) / sizes if sizes else 1.0)
        ious.append(len(overlap) / len(union) if union else 1.0)
    return numpy.array(dices), numpy.array(ious)


def test_evaluate_prints_the_dice_and_iou_of_the_checkpoint_and_its_worst_cases(trained_run, tmp_path, capsys):
    data = write_layout(str(tmp_path / "shenzhen"), "shenzhen", 6, seed=5, size=32)
    checkpoint = os.path.join(trained_run, "best.npz")
    gallery = str(tmp_path / "pictures" / "worst.png")
    status, out, _ = run_main(["evaluate", "--checkpoint", checkpoint, "--data", data, "--no-cache",
                               "--no-postprocess", "--gallery", gallery], capsys)
    assert status == 0 and "on 6 images at 32x32\n" in out
    printed = re.search(r"Dice (\S+)  IoU (\S+)", out)
    dice, iou = expected_dice_and_iou(checkpoint, os.path.join(data, "CXR_png"), os.path.join(data, "mask"))
    assert float(printed[1]) == pytest.approx(dice.mean(), abs=6e-5)
    assert float(printed[2]) == pytest.approx(iou.mean(), abs=6e-5)
    median = re.search(r"per-image Dice: median (\S+),", out)
    assert float(median[1]) == pytest.approx(numpy.median(dice), abs=6e-5)
    names = sorted(name[:-len(".png")] for name in os.listdir(os.path.join(data, "CXR_png")))
    worst = re.findall(r"(CHNCXR_\d{4}_[01]) ([0-9.]+)", out.split("lowest Dice: ")[1].splitlines()[0])
    expected = [names[index] for index in numpy.argsort(dice, kind="stable")[:5]]
    assert [name for name, _ in worst] == expected
    assert [float(value) for _, value in worst] == pytest.approx(numpy.sort(dice)[:5], abs=6e-5)
    with Image.open(gallery) as picture:
        assert picture.format == "PNG" and picture.size[0] > picture.size[1]
    assert f"drawn in {gallery}" in out


def test_evaluate_postprocesses_by_default_and_draws_beside_the_checkpoint(trained_run, tmp_path, capsys):
    data = write_layout(str(tmp_path / "generic"), "shenzhen", 4, seed=6, size=32)
    checkpoint = str(tmp_path / "copy" / "best.npz")
    os.makedirs(os.path.dirname(checkpoint))
    shutil.copy(os.path.join(trained_run, "best.npz"), checkpoint)
    status, out, _ = run_main(["evaluate", "--checkpoint", checkpoint, "--data", data, "--no-cache"], capsys)
    raw = re.search(r"\(postprocessed; raw masks: Dice (\S+)\)", out)
    dice, _ = expected_dice_and_iou(checkpoint, os.path.join(data, "CXR_png"), os.path.join(data, "mask"))
    assert status == 0 and float(raw[1]) == pytest.approx(dice.mean(), abs=6e-5)
    assert os.path.exists(str(tmp_path / "copy" / "worst_cases.png"))


def test_evaluate_refuses_a_gallery_it_cannot_write_before_any_work(trained_run, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    status, _, err = run_main(["evaluate", "--checkpoint", trained_run, "--data", str(tmp_path / "missing"),
                               "--gallery", str(tmp_path / "file" / "worst.png")], capsys)
    assert status == 2 and err.count("\n") == 1 and "--gallery" in err and "is not a folder" in err
    status, _, err = run_main(["evaluate", "--checkpoint", trained_run, "--data", str(tmp_path / "missing"),
                               "--gallery", str(tmp_path)], capsys)
    assert status == 2
    assert err == f"train_lung.py: error: --gallery {tmp_path} is a folder; give the picture's file name\n"
    data = tmp_path / "data"
    (data / "CXR_png").mkdir(parents=True)
    (data / "CXR_png" / "a.png").write_bytes(b"an image")
    status, _, err = run_main(["evaluate", "--checkpoint", trained_run, "--data", str(data),
                               "--gallery", str(data / "CXR_png" / "a.png")], capsys)
    assert status == 2 and err.count("\n") == 1 and f"lies inside --data {data}" in err
    assert (data / "CXR_png" / "a.png").read_bytes() == b"an image"


def test_training_on_a_folder_uses_the_real_loading_path(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_layout(data, "kaggle", 10, seed=1, size=48)
    status, out, _ = run_main(TINY + ["--data", data, "--epochs", "1", "--out", str(tmp_path / "run")], capsys)
    assert status == 0 and "layout 'kaggle', 10 images, 10 mask files, 10 pairs used" in out
    assert "8 training / 2 validation images" in out


@pytest.mark.parametrize("model", sorted(MODEL_STRIDES))
def test_every_model_trains_a_step(tmp_path, capsys, model):
    argv = ["--model", model, "--size", "32", "--synthetic-count", "3", "--init-features", "2", "--batch-size", "2",
            "--epochs", "1", "--quiet", "--val-fraction", "0.34", "--out", str(tmp_path / model)]
    status, out, err = run_main(argv, capsys)
    assert status == 0, err
    assert "epoch 1/1: train loss" in out
    state = minidl.load(os.path.join(tmp_path, model, "last.npz"))
    assert str(TrainConfig.from_json(str(state["config"])).model) == model


def test_two_class_cross_entropy_training(tmp_path, capsys):
    status, out, err = run_main(TINY + ["--loss", "ce", "--epochs", "1", "--out", str(tmp_path / "ce")], capsys)
    assert status == 0, err
    weight = minidl.load(os.path.join(tmp_path, "ce", "last.npz"))["model.out.weight"]
    assert weight.shape[0] == 2


def test_main_runs_with_small_numpy_buffers_and_restores_them(monkeypatch):
    seen = []
    monkeypatch.setattr(train_lung, "run", lambda argv: seen.append(numpy.getbufsize()) or 0)
    before = numpy.getbufsize()
    assert train_lung.main([]) == 0
    assert seen == [256] and numpy.getbufsize() == before


def test_dice_and_iou_values():
    predicted = numpy.zeros((3, 4, 4), bool)
    target = numpy.zeros((3, 4, 4), bool)
    predicted[0, :2], target[0, 1:3] = True, True  # 8 and 8 pixels, 4 shared
    predicted[1, 0, 0] = True  # one false positive, empty target
    dice, iou = dice_and_iou(predicted, target)
    numpy.testing.assert_allclose(dice, [0.5, 0.0, 1.0])
    numpy.testing.assert_allclose(iou, [4 / 12, 0.0, 1.0])


def bad_corrupt_image(folder):
    root = write_layout(folder, "generic", 4, seed=0, size=32)
    with open(os.path.join(root, "images", "case_002.png"), "wb") as stream:
        stream.write(b"\x89PNG broken")
    return ["--data", str(root)], "cannot read image .*case_002.png"


def bad_mask_size(folder):
    root = write_layout(folder, "shenzhen", 4, seed=0, size=32)
    mask = os.path.join(root, "mask", sorted(os.listdir(os.path.join(root, "mask")))[1])
    Image.new("L", (40, 32)).save(mask)
    return ["--data", str(root)], "mask .* is 40x32 but its image .* is 32x32"


def bad_unrecognised(folder):
    os.makedirs(os.path.join(folder, "pictures"))
    return ["--data", str(folder)], "unrecognised layout"


def bad_empty(folder):
    for name in ("CXR_png", "masks"):
        os.makedirs(os.path.join(folder, name))
    return ["--data", str(folder)], "no image has a mask"


BAD_INPUTS = {
    "missing data folder": lambda folder: (["--data", str(folder / "absent")], "no such folder"),
    "unrecognised layout": bad_unrecognised,
    "empty dataset": bad_empty,
    "corrupt image": bad_corrupt_image,
    "mask size differs": bad_mask_size,
    "size not a number": lambda folder: (["--size", "big"], "argument --size: invalid int value"),
    "size too small": lambda folder: (["--size", "0"], "--size 0: must be between 16 and 2048"),
    "size not a multiple": lambda folder: (["--size", "100"], "multiple of 16"),
    "negative learning rate": lambda folder: (["--lr", "-0.01"], "--lr -0.01: the learning rate must be a positive"),
    "unknown model": lambda folder: (["--model", "unet"], "unknown model"),
    "fcn too narrow": lambda folder: (["--model", "fcn", "--init-features", "1"],
                                      "--init-features 1: model fcn needs at least 2"),
    "missing checkpoint": lambda folder: (["--resume", str(folder / "none.npz")], "no such file"),
    "predict missing checkpoint": lambda folder: (["predict", "--checkpoint", str(folder / "c.npz"), "x.png",
                                                   "--out", str(folder)], "no such file"),
    "evaluate without data": lambda folder: (["evaluate", "--checkpoint", "c.npz"], "required: --data"),
    "negative seed": lambda folder: (["--seed", "-1"], "--seed -1: must be a non-negative integer"),
    "negative seed of a synthetic set": lambda folder: (["--make-synthetic", str(folder / "set"), "2", "--seed", "-1"],
                                                        "--seed -1: must be a non-negative integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, case):
    argv, message = BAD_INPUTS[case](tmp_path)
    try:
        status = train_lung.main(argv + ["--out", str(tmp_path / "run")] if argv[0].startswith("--") else argv)
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("train_lung.py")
    assert re.search(message, err), err


def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--data", str(tmp_path / "absent")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("train_lung.py: error: --data") and "Traceback" not in result.stderr


def test_predict_names_an_unreadable_image(trained_run, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    status, _, err = run_main(["predict", "--checkpoint", trained_run, str(broken), "--out", str(tmp_path)], capsys)
    assert status == 2 and "broken.png" in err


@pytest.mark.skipif(gpu_available(), reason="a GPU is present")
def test_gpu_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    status, _, err = run_main(TINY + ["--device", "gpu", "--out", str(tmp_path / "run")], capsys)
    assert status == 2 and "no usable GPU" in err


def test_resume_refuses_changed_settings_and_out_refuses_to_overwrite(trained_run, capsys):
    status, _, err = run_main(["--resume", trained_run, "--lr", "0.1"], capsys)
    assert status == 2 and "drop --lr" in err
    status, _, err = run_main(TINY + ["--out", trained_run], capsys)
    assert status == 2 and "already holds a run" in err


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "data").mkdir()  # apart from the checkpoint's folder, where the gallery would go
    status, _, err = run_main(["evaluate", "--checkpoint", str(bogus), "--data", str(tmp_path / "data")], capsys)
    assert status == 2 and "bogus.npz" in err and err.count("\n") == 1


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(trained_run, monkeypatch):
    path = os.path.join(trained_run, "last.npz")
    before = minidl.load(path)

    def killed_before_the_rename(descriptor):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed_before_the_rename)
    model, config = load_trained_model(trained_run)
    with pytest.raises(KeyboardInterrupt):
        minidl.save(path, model.state_dict())
    monkeypatch.undo()
    after = minidl.load(path)
    assert_same_state(before, after)
    assert not [name for name in os.listdir(trained_run) if name.startswith(".tmp")]


def test_a_model_constructor_refusal_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import models

    def refuse(*args, **kwargs):
        raise ValueError("SegNetSmall: refused")

    monkeypatch.setattr(models, "SegNetSmall", refuse)
    status, _, err = run_main(TINY + ["--out", str(tmp_path / "run")], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "--model segnet_small --init-features 4: the model cannot be built (SegNetSmall: refused)" in err


def wrong_shape(state, key):
    state[key] = numpy.zeros((1, *state[key].shape))


def missing(state, key):
    del state[key]


WEIGHTS_MISFIT = "weights do not fit the model"
OPTIMIZER_MISFIT = "optimizer state does not fit the model"
MISFITS = [  # (command, how the checkpoint is altered, the key, what the error says)
    ("predict", wrong_shape, "model.enc1.conv.weight", f"{WEIGHTS_MISFIT} .*'enc1.conv.weight' has shape"),
    ("predict", missing, "model.out.weight", rf"{WEIGHTS_MISFIT} .*missing keys \['out.weight'\]"),
    ("resume", wrong_shape, "model.enc1.conv.weight", f"{WEIGHTS_MISFIT} .*'enc1.conv.weight' has shape"),
    ("resume", missing, "model.out.weight", rf"{WEIGHTS_MISFIT} .*missing keys \['out.weight'\]"),
    ("resume", wrong_shape, "optim.state.0.exp_avg", f"{OPTIMIZER_MISFIT} .*'state.0.exp_avg' has shape"),
    ("resume", missing, "optim.group.0.lr", f"{OPTIMIZER_MISFIT} .*missing key 'group.0.lr'"),
]


@pytest.mark.parametrize("command, alter, key, message", MISFITS,
                         ids=[f"{command}-{alter.__name__}-{key}" for command, alter, key, _ in MISFITS])
def test_a_checkpoint_that_does_not_fit_the_model_is_a_one_line_error(trained_run, tmp_path, capsys, no_loading,
                                                                       command, alter, key, message):
    state = minidl.load(os.path.join(trained_run, "last.npz"))
    alter(state, key)
    checkpoint = str(tmp_path / "misfit.npz")
    minidl.save(checkpoint, state)
    if command == "predict":
        image = str(tmp_path / "x.png")
        Image.new("L", (32, 32)).save(image)
        argv = ["predict", "--checkpoint", checkpoint, image, "--out", str(tmp_path / "predicted")]
    else:
        argv = ["--resume", checkpoint, "--epochs", "4", "--quiet"]
    status, _, err = run_main(argv, capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re.search("checkpoint .*misfit.npz: " + message, err), err


def forbid_loading(monkeypatch):
    """From now on, fail the test if train_lung.py starts loading a dataset: its error must come before."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the error")

    monkeypatch.setattr(train_lung, "load_examples", refuse)


@pytest.fixture
def no_loading(monkeypatch):
    forbid_loading(monkeypatch)


def file_bytes(folder):
    """{name: content} of the files in a folder."""
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def test_resume_refuses_an_out_that_holds_another_run(trained_run, tmp_path, capsys, monkeypatch):
    other = tmp_path / "fcn"
    assert train_lung.main(TINY + ["--model", "fcn", "--epochs", "1", "--out", str(other)]) == 0
    before = file_bytes(other)
    forbid_loading(monkeypatch)
    status, _, err = run_main(["--resume", trained_run, "--epochs", "5", "--out", str(other), "--quiet"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"{other} holds another run ({other / 'last.npz'})" in err and "choose another --out" in err
    assert file_bytes(other) == before


def test_resume_refuses_a_checkpoint_older_than_the_last_one_and_branches_off_with_out(tmp_path, capsys):
    run_dir, branch = tmp_path / "run", tmp_path / "branch"
    assert run_main(TINY + ["--epochs", "1", "--out", str(run_dir)], capsys)[0] == 0
    first_best = (run_dir / "best.npz").read_bytes()
    assert run_main(["--resume", str(run_dir), "--epochs", "2", "--quiet"], capsys)[0] == 0
    (run_dir / "best.npz").write_bytes(first_best)  # as if epoch 2 had not improved
    before = file_bytes(run_dir)
    status, _, err = run_main(["--resume", str(run_dir / "best.npz"), "--epochs", "4", "--quiet"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"best.npz has trained 1 epoch but {run_dir / 'last.npz'} has trained 2 epochs" in err
    assert f"--resume {run_dir / 'last.npz'}" in err and "--out NEW_FOLDER" in err
    assert file_bytes(run_dir) == before
    status, out, _ = run_main(["--resume", str(run_dir / "best.npz"), "--epochs", "2", "--quiet", "--out",
                               str(branch)], capsys)
    assert status == 0 and file_bytes(run_dir) == before
    best = int(re.search(r"at epoch (\d+);", out)[1])
    assert int(minidl.load(branch / "best.npz")["epoch"]) == best and out.rstrip().endswith(f"outputs in {branch}")


def test_a_run_resumed_into_a_new_folder_carries_its_best_checkpoint_or_says_it_has_none(trained_run, tmp_path,
                                                                                         capsys):
    moved = tmp_path / "moved"
    status, out, _ = run_main(["--resume", trained_run, "--epochs", "4", "--quiet", "--out", str(moved)], capsys)
    best = int(re.search(r"at epoch (\d+);", out)[1])
    assert status == 0 and int(minidl.load(moved / "best.npz")["epoch"]) == best
    assert out.rstrip().endswith(f"outputs in {moved}")
    lone, state = tmp_path / "lone", minidl.load(os.path.join(trained_run, "last.npz"))
    state["history.val_dice"] = numpy.array([0.9, 0.1, 0.2])  # epoch 1 best, and no best.npz beside it
    state["best_dice"] = numpy.float64(0.9)
    minidl.save(lone / "last.npz", state)
    status, out, _ = run_main(["--resume", str(lone), "--epochs", "4", "--quiet", "--out", str(tmp_path / "b")],
                              capsys)
    assert status == 0 and not (tmp_path / "b" / "best.npz").exists()
    assert "at epoch 1;" in out and f"(no best.npz there: none for epoch 1 was found beside {lone}" in out


def test_resume_after_the_dataset_moved_takes_its_new_place_from_data(tmp_path, capsys, monkeypatch):
    data, moved, run_dir = tmp_path / "data", tmp_path / "moved", str(tmp_path / "run")
    write_layout(str(data), "generic", 6, seed=1, size=32)
    assert run_main(TINY + ["--data", str(data), "--epochs", "1", "--out", run_dir], capsys)[0] == 0
    os.rename(data, moved)
    status, _, err = run_main(["--resume", run_dir, "--epochs", "2", "--quiet", "--no-cache"], capsys)
    assert status == 2 and err.count("\n") == 1 and "checkpoint " in err
    assert f"trained on the dataset folder {data}, which no longer exists" in err and "with --data" in err
    status, out, err = run_main(["--resume", run_dir, "--epochs", "2", "--quiet", "--no-cache", "--data", str(moved)],
                                capsys)
    assert status == 0, err
    assert TrainConfig.from_json(str(minidl.load(os.path.join(run_dir, "last.npz"))["config"])).data == str(moved)
    status, _, err = run_main(["--resume", run_dir, "--epochs", "3", "--model", "fcn"], capsys)
    assert status == 2 and "drop --model" in err


def test_resume_refuses_a_dataset_folder_that_no_longer_holds_the_same_images(tmp_path, capsys, monkeypatch):
    data, other, run_dir = tmp_path / "data", tmp_path / "other", str(tmp_path / "run")
    write_layout(str(data), "generic", 6, seed=1, size=32)
    write_layout(str(other), "generic", 7, seed=1, size=32)
    assert run_main(TINY + ["--data", str(data), "--epochs", "1", "--out", run_dir, "--no-cache"], capsys)[0] == 0
    forbid_loading(monkeypatch)  # both refusals come before any image is decoded
    trained_on = str(minidl.load(os.path.join(run_dir, "last.npz"))["dataset"])
    assert re.fullmatch(r"6 pairs, image paths sha256 [0-9a-f]{16}", trained_on)
    status, _, err = run_main(["--resume", run_dir, "--epochs", "2", "--data", str(other)], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "now holds 7 pairs" in err and f"trained on {trained_on}: not the same images" in err
    os.remove(next(path for path in sorted((data / "images").iterdir())))  # an image less in the same folder
    status, _, err = run_main(["--resume", run_dir, "--epochs", "2"], capsys)
    assert status == 2 and "now holds 5 pairs" in err


def test_data_with_the_resume_of_a_synthetic_run_is_refused(trained_run, tmp_path, capsys):
    status, _, err = run_main(["--resume", trained_run, "--epochs", "4", "--data", str(tmp_path)], capsys)
    assert status == 2 and "trained on the synthetic set; drop --data" in err


def a_file(folder):
    (folder / "afile").write_text("not a folder")
    return str(folder / "afile")


UNUSABLE_OUTPUTS = {  # how the path is made, what the error says after the option and the path
    "a file": (a_file, "it exists and is not a folder"),
    "below a file": (lambda folder: os.path.join(a_file(folder), "sub"), r"/afile exists and is not a folder"),
    "in /proc": (lambda folder: "/proc/minidl-nope", r"cannot write in /proc \("),
}


@pytest.mark.parametrize("command", ["train", "resume", "predict", "make-synthetic"])
@pytest.mark.parametrize("case", sorted(UNUSABLE_OUTPUTS))
def test_an_unusable_output_path_is_a_one_line_error_before_any_work(trained_run, tmp_path, capsys, no_loading,
                                                                     command, case):
    if case == "in /proc" and not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    make, message = UNUSABLE_OUTPUTS[case]
    path = make(tmp_path)
    option = "--make-synthetic" if command == "make-synthetic" else "--out"
    argv = {"train": TINY + ["--out", path], "resume": ["--resume", trained_run, "--epochs", "4", "--out", path],
            "predict": ["predict", "--checkpoint", trained_run, str(tmp_path / "x.png"), "--out", path],
            "make-synthetic": ["--make-synthetic", path, "2"]}[command]
    status, _, err = run_main(argv, capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(f"error: {option} {re.escape(path)}: .*{message}", err), err


def test_predict_refuses_inputs_of_one_name_and_writes_nothing_when_an_input_is_bad(trained_run, tmp_path, capsys):
    for folder in ("a", "b"):
        os.makedirs(tmp_path / folder)
        Image.new("L", (20, 24)).save(tmp_path / folder / "x.png")
    Image.new("L", (20, 24)).save(tmp_path / "y.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    out = tmp_path / "predicted"
    status, _, err = run_main(["predict", "--checkpoint", trained_run, str(tmp_path / "a" / "x.png"),
                               str(tmp_path / "b" / "x.png"), "--out", str(out)], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"IMAGES {tmp_path / 'a' / 'x.png'} and {tmp_path / 'b' / 'x.png'} would both write x_mask.png" in err
    Image.new("L", (20, 24)).save(tmp_path / "b" / "X.png")  # one output file where case is ignored
    status, _, err = run_main(["predict", "--checkpoint", trained_run, str(tmp_path / "a" / "x.png"),
                               str(tmp_path / "b" / "X.png"), "--out", str(out)], capsys)
    assert status == 2 and "would both write X_mask.png" in err
    for bad in ("bad.png", "missing.png"):
        status, _, err = run_main(["predict", "--checkpoint", trained_run, str(tmp_path / "y.png"),
                                   str(tmp_path / bad), "--out", str(out)], capsys)
        assert status == 2 and f"cannot read image {tmp_path / bad}" in err
    assert not out.exists()


def test_predict_counts_a_file_given_twice_once(trained_run, tmp_path, capsys):
    Image.new("L", (20, 24)).save(tmp_path / "y.png")
    out = tmp_path / "predicted"
    status, _, _ = run_main(["predict", "--checkpoint", trained_run, str(tmp_path / "y.png"),
                             str(tmp_path / "." / "y.png"), "--out", str(out)], capsys)
    assert status == 0 and sorted(os.listdir(out)) == ["y_mask.png", "y_overlay.png"]


def test_an_output_path_on_a_missing_drive_is_refused_not_searched_forever(monkeypatch):
    from minidl.training import folders
    from minidl.training.errors import ConfigError
    monkeypatch.setattr(folders.os.path, "lexists", lambda path: False)  # not even the root exists
    with pytest.raises(ConfigError, match="--out /nowhere/run: not even its drive or share exists"):
        folders.check_output_folder("/nowhere/run")


def test_training_fractions_that_leave_no_training_image_are_refused_before_loading(tmp_path, capsys, no_loading):
    status, _, err = run_main(TINY + ["--val-fraction", "0.6", "--test-fraction", "0.4", "--out",
                                      str(tmp_path / "run")], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "--val-fraction 0.6 and --test-fraction 0.4 leave no training image of the 14 synthetic images" in err
    data = write_layout(str(tmp_path / "data"), "generic", 4, seed=0, size=32)
    status, _, err = run_main(TINY + ["--data", data, "--val-fraction", "0.5", "--test-fraction", "0.4", "--out",
                                      str(tmp_path / "run")], capsys)
    assert status == 2 and f"leave no training image of the 4 pairs in --data {data}" in err


def test_resume_names_the_flag_the_user_typed(trained_run, capsys):
    status, _, err = run_main(["--resume", trained_run, "--epochs", "4", "--no-augment", "--lr", "0.1"], capsys)
    assert status == 2 and err.endswith("drop --lr, --no-augment\n"), err


def test_a_file_that_is_not_an_npz_archive_never_points_at_unsafe_loading(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("a text file, not a checkpoint\n")
    for argv in (["--resume", str(text)], ["predict", "--checkpoint", str(text), "x.png", "--out", str(tmp_path)]):
        status, _, err = run_main(argv, capsys)
        assert status == 2 and err.count("\n") == 1
        assert "notes.txt is not an .npz archive written by minidl.save" in err and "pickle" not in err


def replaced(key, value):
    def alter(state):
        state[key] = value
    alter.__name__ = key
    return alter


def config_with(**settings):
    def alter(state):
        state["config"] = numpy.array(json.dumps({**json.loads(str(state["config"])), **settings}))
    alter.__name__ = "config"
    return alter


MALFORMED = [  # how the checkpoint is damaged, what the error says after "checkpoint <path>: "
    (replaced("rng.state", numpy.zeros(3, numpy.uint64)), r"field 'rng.state' must be 4 uint64 words, got dtype "
                                                          r"uint64, shape \(3,\)"),
    (replaced("rng.state", numpy.zeros(4, numpy.int32)), "field 'rng.state' must be 4 uint64 words"),
    (replaced("epoch", numpy.array([3, 3])), r"field 'epoch' must be an integer, got dtype int64, shape \(2,\)"),
    (replaced("epoch", numpy.int64(-1)), "field 'epoch' is -1, below 0"),
    (replaced("step", numpy.float64(1.5)), "field 'step' must be an integer"),
    (replaced("best_dice", numpy.array("high")), "field 'best_dice' must be a number"),
    (replaced("rng.uinteger", numpy.array([1, 2])), "field 'rng.uinteger' must be an integer"),
    (replaced("history.val_dice", numpy.zeros(2)), r"field 'history.val_dice' must hold 3 numbers"),
    (replaced("partial.loss", numpy.zeros(2)), "field 'partial.loss' must be a number"),
    (replaced("config", numpy.array(["{}"])), "field 'config' must be a JSON string"),
    (replaced("config", numpy.array("[1, 2]")), "field 'config' is unreadable"),
    (config_with(seed=1.5), r"field 'config' is unreadable \(setting 'seed' is 1.5, not of type int\)"),
    (config_with(size="big"), r"field 'config' is unreadable \(setting 'size' is 'big'"),
    (replaced("dataset", numpy.array([1, 2])), r"field 'dataset' must be a string, got dtype int64"),
]


@pytest.mark.parametrize("alter, message", MALFORMED, ids=[f"{i}-{alter.__name__}" for i, (alter, _) in
                                                           enumerate(MALFORMED)])
def test_a_malformed_checkpoint_field_is_a_one_line_error_naming_it(trained_run, tmp_path, capsys, alter, message):
    state = minidl.load(os.path.join(trained_run, "last.npz"))
    alter(state)
    checkpoint = str(tmp_path / "damaged.npz")
    minidl.save(checkpoint, state)
    for argv in (["--resume", checkpoint, "--epochs", "5", "--quiet"],
                 ["predict", "--checkpoint", checkpoint, "x.png", "--out", str(tmp_path / "out")]):
        status, _, err = run_main(argv, capsys)
        assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert re.search(f"checkpoint .*damaged.npz: {message}", err), err


def test_a_resume_step_beyond_an_epoch_is_a_checkpoint_error(trained_run, tmp_path, capsys):
    state = minidl.load(os.path.join(trained_run, "last.npz"))
    state["step"] = numpy.int64(50)
    minidl.save(tmp_path / "far.npz", state)
    status, _, err = run_main(["--resume", str(tmp_path / "far.npz"), "--epochs", "4", "--quiet"], capsys)
    assert status == 2 and "far.npz: field 'step' is 50, beyond the 3 batches of an epoch" in err
    assert not (tmp_path / "last.npz").exists()


def test_a_trainer_given_no_training_images_says_so(tmp_path):
    from minidl.training import ConfigError, Trainer
    config = TrainConfig(epochs=1, batch_size=2, size=16, init_features=2)
    empty = (numpy.zeros((0, 1, 16, 16), numpy.float32), numpy.zeros((0, 1, 16, 16), numpy.float32))
    trainer = Trainer(config, str(tmp_path / "run"), log=lambda line: None, progress=False)
    with pytest.raises(ConfigError, match="no training images"):
        trainer.fit({"train": empty, "val": empty})
    assert not (tmp_path / "run").exists()


def test_resuming_in_an_unwritable_checkpoint_folder_names_that_folder_not_out(trained_run, capsys, monkeypatch):
    from minidl.training import folders

    def refused(folder):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(folders, "probe_writable", refused)
    status, _, err = run_main(["--resume", trained_run, "--epochs", "4"], capsys)
    assert status == 2 and err.count("\n") == 1 and "--out " not in err.split("--out NEW_FOLDER")[0]
    assert "the checkpoint's folder" in err and "Permission denied" in err and "--out NEW_FOLDER" in err


def test_two_checkpoints_are_one_run_only_if_their_datasets_agree():
    from minidl.training.folders import same_run
    start = {"config": TrainConfig(), "epoch": 0, "history": {}}
    one, two, unknown = ({**start, "dataset": name} for name in ("6 pairs, a", "6 pairs, b", None))
    assert same_run(one, one) and same_run(one, unknown)    # a checkpoint without a fingerprint cannot tell
    assert not same_run(one, two)
    assert not same_run(one, {**one, "config": TrainConfig(seed=1)})
    assert same_run(one, {**one, "config": TrainConfig(epochs=99)})  # a run may be given more epochs

"""train_lung.py under faults a user causes or meets: outputs that would replace a user's files, two runs on one
folder, SIGTERM, kill -9 at random points, a full disk, unreadable or looping paths, oversized images and
arrays. Each ends in one line and a documented exit status, and no file of the user's is lost."""
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy
import pytest
from PIL import Image

import minidl
from minidl.training import CheckpointError, read_checkpoint
from minidl.training.lock import folder_lock
from cli_helpers import (ROOT, SCRIPT, TINY, history_of, long_run_with_a_checkpoint, run_main, temporary_files,
                         train_lung)


def one_line_error(status, err, expected_status=2):
    assert status == expected_status and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def file_bytes(*paths):
    return {str(path): open(path, "rb").read() for path in paths}


def gray_picture(path, value, size=(24, 20)):
    Image.fromarray(numpy.full(size[::-1], value, numpy.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 2-epoch tiny run that the tests read but never change."""
    folder = str(tmp_path_factory.mktemp("faults") / "run")
    assert train_lung.main(TINY + ["--epochs", "2", "--out", folder]) == 0
    return folder


def copy_of(run_dir, folder, names=("best.npz", "last.npz")):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        shutil.copyfile(os.path.join(run_dir, name), os.path.join(folder, name))
    return str(folder)


# ---------------------------------------------------------------- 1: predict never replaces a user's file
def test_predict_refuses_to_write_over_its_inputs_or_a_ground_truth_mask(run_dir, tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    inputs = [gray_picture(folder / "a.png", 10), gray_picture(folder / "a_mask.png", 20),
              gray_picture(folder / "b.png", 30)]
    truth = gray_picture(folder / "b_mask.png", 255)
    before = file_bytes(*inputs, truth)
    status, _, err = run_main(["predict", "--checkpoint", run_dir, *inputs, "--out", str(folder)], capsys)
    assert "would write over its own input " + str(folder / "a_mask.png") in one_line_error(status, err)
    assert file_bytes(*inputs, truth) == before
    status, _, err = run_main(["predict", "--checkpoint", run_dir, inputs[2], "--out", str(folder)], capsys)
    assert f"--out already holds {folder / 'b_mask.png'}" in one_line_error(status, err) and "--overwrite" in err
    assert file_bytes(*inputs, truth) == before and sorted(os.listdir(folder)) == ["a.png", "a_mask.png", "b.png",
                                                                                   "b_mask.png"]


def test_predict_replaces_its_own_earlier_outputs_only_with_overwrite(run_dir, tmp_path, capsys):
    image, out = gray_picture(tmp_path / "x.png", 100), tmp_path / "out"
    arguments = ["predict", "--checkpoint", run_dir, image, "--out", str(out)]
    assert run_main(arguments, capsys)[0] == 0
    (out / "x_mask.png").write_bytes(b"the user's edits")
    status, _, err = run_main(arguments, capsys)
    assert "x_mask.png" in one_line_error(status, err) and (out / "x_mask.png").read_bytes() == b"the user's edits"
    assert run_main(arguments + ["--overwrite"], capsys)[0] == 0
    with Image.open(out / "x_mask.png") as mask:
        assert mask.size == (24, 20)
    status, _, err = run_main(["predict", "--checkpoint", run_dir, str(out / "x_mask.png"), "--out", str(out),
                               "--overwrite"], capsys)  # x_mask_mask.png is new, but x_mask.png is the input
    assert status == 0, err
    shutil.copyfile(image, out / "x_mask_mask.png")
    status, _, err = run_main(["predict", "--checkpoint", run_dir, str(out / "x_mask_mask.png"), "--out",
                               str(tmp_path), "--overwrite"], capsys)
    assert status == 0
    status, _, err = run_main(["predict", "--checkpoint", run_dir, str(out / "x_mask.png"), str(out / "x.png"),
                               "--out", str(out), "--overwrite"], capsys)
    assert "would write over its own input" in one_line_error(status, err)  # never, even with --overwrite


def test_predict_reads_each_input_once_before_writing_anything(run_dir, tmp_path, capsys, monkeypatch):
    """Each input file is opened once, all before the first output lands (outputs land by os.replace), and
    decoded from the bytes read then (never from the file again)."""
    from minidl.data import images
    inputs = [gray_picture(tmp_path / f"{name}.png", value) for name, value in (("a", 60), ("b", 200))]
    out, events = tmp_path / "out", []
    real_open, real_replace, real_image_open = open, os.replace, Image.open

    def logged_open(path, *arguments, **keywords):
        if str(path) in inputs:
            events.append(("read", os.path.basename(str(path))))
        return real_open(path, *arguments, **keywords)

    def logged_replace(source, target):
        events.append(("write", os.path.basename(str(target))))
        return real_replace(source, target)

    def logged_image_open(source, *arguments, **keywords):
        if str(source) in inputs:
            events.append(("decoded from the file", os.path.basename(str(source))))
        return real_image_open(source, *arguments, **keywords)

    monkeypatch.setattr("builtins.open", logged_open)
    monkeypatch.setattr(os, "replace", logged_replace)
    monkeypatch.setattr(images.Image, "open", logged_image_open)
    assert run_main(["predict", "--checkpoint", run_dir, *inputs, "--out", str(out)], capsys)[0] == 0
    assert events[:2] == [("read", "a.png"), ("read", "b.png")], events
    assert sorted(events[2:]) == [("write", name) for name in
                                  ("a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png")], events


def test_predict_into_a_shenzhen_masks_folder_keeps_the_ground_truth(run_dir, tmp_path, capsys):
    root = tmp_path / "Lung Segmentation"
    (root / "CXR_png").mkdir(parents=True)
    (root / "masks").mkdir()
    image = gray_picture(root / "CXR_png" / "CHNCXR_0001_0.png", 90)
    truth = gray_picture(root / "masks" / "CHNCXR_0001_0_mask.png", 255)
    before = file_bytes(truth)
    status, _, err = run_main(["predict", "--checkpoint", run_dir, image, "--out", str(root / "masks")], capsys)
    assert "CHNCXR_0001_0_mask.png" in one_line_error(status, err) and file_bytes(truth) == before


# ---------------------------------------------------------------- 2: --make-synthetic never replaces a dataset
def test_make_synthetic_refuses_a_folder_that_holds_files(tmp_path, capsys):
    real = tmp_path / "data" / "Lung Segmentation" / "CXR_png"
    real.mkdir(parents=True)
    image = gray_picture(real / "MCUCXR_0001_0.png", 77, size=(40, 30))
    before = file_bytes(image)
    status, _, err = run_main(["--make-synthetic", str(tmp_path / "data"), "2"], capsys)
    assert f"already holds files (such as {image})" in one_line_error(status, err)
    assert file_bytes(image) == before and os.listdir(real) == ["MCUCXR_0001_0.png"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert run_main(["--make-synthetic", str(tmp_path / "empty"), "2"], capsys)[0] == 0


# ---------------------------------------------------------------- 3: one writer per run folder
def test_a_run_resume_or_predict_is_refused_while_another_process_holds_the_folder(run_dir, tmp_path, capsys):
    folder = copy_of(run_dir, tmp_path / "busy")
    before = file_bytes(*(os.path.join(folder, name) for name in os.listdir(folder)))
    image = gray_picture(tmp_path / "y.png", 50)
    attempts = [TINY + ["--epochs", "1", "--out", str(tmp_path / "busy")],
                ["--resume", folder, "--epochs", "3", "--quiet"],
                ["predict", "--checkpoint", run_dir, image, "--out", folder]]
    with folder_lock(folder):  # as another process's run would: flock locks conflict between open files too
        for argv in attempts:
            status, _, err = run_main(argv, capsys)
            assert "is in use by another train_lung.py process" in one_line_error(status, err)
    assert file_bytes(*(os.path.join(folder, name) for name in os.listdir(folder))) == before
    assert run_main(attempts[1], capsys)[0] == 0  # free again once the holder is gone


def test_the_lock_dies_with_a_killed_process(tmp_path):
    folder = str(tmp_path / "held")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from minidl.training.lock import "
                               "folder_lock\nwith folder_lock(sys.argv[1]):\n print('held', flush=True)\n "
                               "time.sleep(60)", folder], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match="in use by another"):
        with folder_lock(folder):
            pass
    holder.kill()
    holder.wait(timeout=30)
    with folder_lock(folder):
        assert os.path.isdir(folder)


# ---------------------------------------------------------------- 4: SIGTERM is Ctrl-C
def test_sigterm_saves_last_npz_exits_143_and_resumes_like_ctrl_c(tmp_path):
    run = str(tmp_path / "run")
    process = long_run_with_a_checkpoint(run)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "interrupted by SIGTERM in epoch" in err and "--resume" in err, err
    stopped = read_checkpoint(run)
    resumed = subprocess.run([sys.executable, SCRIPT, "--resume", run, "--epochs", str(stopped["epoch"] + 1),
                              "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and f"at epoch {stopped['epoch'] + 1}, step {stopped['step']}" in resumed.stdout


def test_sigterm_before_training_ends_in_one_line_with_143(tmp_path, capsys, monkeypatch):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(train_lung, "load_examples", terminated)
    status, _, err = run_main(TINY + ["--out", str(tmp_path / "run")], capsys)
    assert "stopped by SIGTERM" in one_line_error(status, err, 143)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# ---------------------------------------------------------------- 5: a run killed before its first last.npz
def test_a_folder_with_only_best_npz_resumes_from_it_and_leftover_temporaries_are_removed(run_dir, tmp_path,
                                                                                          capsys):
    folder = copy_of(run_dir, tmp_path / "killed", names=("best.npz",))
    for name in (".tmp-abc123.npz", ".tmp-def456.csv"):
        (tmp_path / "killed" / name).write_bytes(b"half a file")
    status, _, err = run_main(TINY + ["--epochs", "3", "--out", folder], capsys)
    assert f"continue it with --resume {folder}" in one_line_error(status, err)
    status, out, _ = run_main(["--resume", folder, "--epochs", "3", "--quiet"], capsys)
    assert status == 0 and "has no last.npz" in out and "resuming from its best.npz" in out
    assert [int(row["epoch"]) for row in history_of(folder)] == [1, 2, 3]
    assert not temporary_files(folder) and read_checkpoint(folder)["epoch"] == 3


def newest_checkpoint(folder):
    """The checkpoint of ``folder`` furthest on (read with its weights), or None where none was written yet."""
    found = [read_checkpoint(os.path.join(folder, name)) for name in ("last.npz", "best.npz")
             if os.path.exists(os.path.join(folder, name))]
    return max(found, key=lambda checkpoint: (checkpoint["epoch"], checkpoint["step"]), default=None)


def has_checkpoint(folder):
    """Whether a finished checkpoint is in the folder (they appear by an atomic rename)."""
    return any(os.path.exists(os.path.join(folder, name)) for name in ("last.npz", "best.npz"))


def test_sigkill_at_random_points_always_leaves_a_checkpoint_that_loads_and_resumes(tmp_path):
    folder, epochs, generator = str(tmp_path / "run"), 12, random.Random(20)
    fresh = [sys.executable, SCRIPT, *TINY, "--epochs", str(epochs), "--out", folder]
    resume = [sys.executable, SCRIPT, "--resume", folder, "--quiet"]
    positions = []
    for _ in range(5):
        command = resume if newest_checkpoint(folder) is not None else fresh
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()  # a slow machine may need longer than the kill's delay to write the first one
        while command is fresh and not has_checkpoint(folder) and time.monotonic() - started < 120:
            time.sleep(0.05)
        time.sleep(generator.uniform(0.2, 2.0))
        process.kill()
        _, err = process.communicate(timeout=60)
        assert b"Traceback" not in err, err
        checkpoint = newest_checkpoint(folder)  # raises if a checkpoint cannot be read
        if checkpoint is not None:
            positions.append((checkpoint["epoch"], checkpoint["step"]))
            assert checkpoint["model"] and checkpoint["history"]["val_dice"].shape == (checkpoint["epoch"],)
    assert positions == sorted(positions) and positions, positions  # a resume never goes back
    result = subprocess.run(resume if newest_checkpoint(folder) is not None else fresh, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [int(row["epoch"]) for row in history_of(folder)] == list(range(1, epochs + 1))
    assert not temporary_files(folder)


# ---------------------------------------------------------------- 6: system faults in one line
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_checkpoint(run_dir, tmp_path, capsys,
                                                                                   monkeypatch):
    folder = copy_of(run_dir, tmp_path / "full")
    before = file_bytes(os.path.join(folder, "last.npz"))
    from minidl import serialization

    def disk_full(stream, arrays):
        stream.write(b"PK\x03\x04 a few bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(serialization, "_write_npz", disk_full)
    status, _, err = run_main(["--resume", folder, "--epochs", "3", "--quiet"], capsys)
    assert f"error: {os.path.join(folder, 'best.npz')}: No space left on device" in one_line_error(status, err) or \
        f"error: {os.path.join(folder, 'last.npz')}: No space left on device" in err
    assert file_bytes(os.path.join(folder, "last.npz")) == before and not temporary_files(folder)


@pytest.mark.parametrize("writer", ["history.csv", "curves.png"])
def test_a_run_folder_made_read_only_mid_run_is_one_line(run_dir, tmp_path, capsys, monkeypatch, writer):
    folder = copy_of(run_dir, tmp_path / "readonly")
    real_replace = os.replace

    def refused(source, target):
        if os.path.basename(target) == writer:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), source)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", refused)
    status, _, err = run_main(["--resume", folder, "--epochs", "3", "--quiet"], capsys)
    assert f"error: {os.path.join(folder, writer)}: Permission denied" in one_line_error(status, err)
    assert read_checkpoint(folder)["epoch"] == 3  # the checkpoints written before the fault are kept


def test_an_unreadable_masks_folder_is_one_line(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    assert run_main(["--make-synthetic", str(data), "4"], capsys)[0] == 0
    masks = str(data / "Lung Segmentation" / "masks")
    real_listdir = os.listdir

    def unreadable(path="."):
        if os.fspath(path) == masks:  # chmod 000 does not stop root, so the refusal is simulated
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", unreadable)
    status, _, err = run_main(TINY + ["--data", str(data), "--out", str(tmp_path / "run")], capsys)
    assert f"cannot read the folder {masks}: Permission denied" in one_line_error(status, err)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("link, reason", [("bad.png", "Too many levels of symbolic links"),
                                          ("nowhere.png", "No such file or directory")])
def test_a_looping_or_dangling_image_symlink_is_named_with_its_reason(run_dir, tmp_path, capsys, link, reason):
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    os.symlink(link, images / "bad.png")
    gray_picture(masks / "bad.png", 255)
    for command in (["evaluate", "--checkpoint", run_dir, "--data", str(tmp_path / "data"), "--no-cache"],
                    ["predict", "--checkpoint", run_dir, str(images / "bad.png"), "--out", str(tmp_path / "o")]):
        status, _, err = run_main(command, capsys)
        assert f"cannot read image {images / 'bad.png'}: {reason}" in err and status == 2 and "Traceback" not in err


def test_a_folder_symlink_loop_is_one_line(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    os.symlink("b", tmp_path / "data" / "a")
    os.symlink("a", tmp_path / "data" / "b")
    status, _, err = run_main(TINY + ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")], capsys)
    assert f"cannot open {tmp_path / 'data' / 'a'}: Too many levels of symbolic links" in one_line_error(status, err)


# ---------------------------------------------------------------- 7: oversized images, arrays and models
def test_an_image_over_pillows_pixel_limit_is_one_line(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 24x20 image is then over twice the limit
    image = gray_picture(tmp_path / "huge.png", 10)
    status, _, err = run_main(["predict", "--checkpoint", run_dir, image, "--out", str(tmp_path / "o")], capsys)
    assert f"cannot read image {image}: Image size (480 pixels) exceeds limit" in one_line_error(status, err)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    gray_picture(data / "images" / "c.png", 10)
    gray_picture(data / "masks" / "c.png", 255)
    status, _, err = run_main(["evaluate", "--checkpoint", run_dir, "--data", str(data), "--no-cache"], capsys)
    assert "exceeds limit" in err and status == 2 and "Traceback" not in err


def npz_with_a_lying_header(path, entries, name, shape):
    """A copy of ``entries`` as an npz whose entry ``name`` declares ``shape`` (float64) over 8 bytes of data."""
    minidl.save(path, {key: value for key, value in entries.items() if key != name})
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    with zipfile.ZipFile(path, "a") as archive, archive.open(name + ".npy", "w") as member:
        numpy.lib.format.write_array_header_1_0(member, header)
        member.write(bytes(8))


def test_an_npz_declaring_a_36_tib_array_is_refused_before_allocating(run_dir, tmp_path, capsys):
    path = str(tmp_path / "bomb.npz")
    npz_with_a_lying_header(path, minidl.load(os.path.join(run_dir, "last.npz")), "model.enc1.conv.bias",
                            (36 * 2 ** 40 // 8,))
    with pytest.raises(ValueError, match=r"entry 'model.enc1.conv.bias' declares a float64 array of shape "
                                         r"\(4947802324992,\) \(39582418599936 bytes\) but holds only"):
        minidl.load(path)
    for command in (["predict", "--checkpoint", path, gray_picture(tmp_path / "x.png", 1), "--out",
                     str(tmp_path / "o")], ["--resume", path]):
        status, _, err = run_main(command, capsys)
        assert "declares a float64 array" in one_line_error(status, err)


def test_load_checks_declared_sizes_against_its_limit_and_reads_no_unused_entry(run_dir, tmp_path):
    path = str(tmp_path / "extra.npz")
    npz_with_a_lying_header(path, minidl.load(os.path.join(run_dir, "last.npz")), "junk", (2 ** 50,))
    assert read_checkpoint(path)["epoch"] == 2  # the unknown entry is never opened
    entries = minidl.load(os.path.join(run_dir, "last.npz"))
    minidl.save(path, {key: value for key, value in entries.items() if key != "history.val_dice"})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("history.val_dice.npy", "w", force_zip64=True) as member:  # a deflate bomb: 80 MiB
        numpy.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                         "shape": (10 << 20,)})
        for _ in range(80):
            member.write(bytes(1 << 20))
    assert os.path.getsize(path) < (1 << 20)
    with pytest.raises(CheckpointError, match=r"entry 'history.val_dice' .* over the limit of 67108864 bytes"):
        read_checkpoint(path)
    minidl.save(path, {"a": numpy.zeros(100), "b": numpy.zeros(100)})
    with pytest.raises(ValueError, match=r"entry 'b' \(float64, shape \(100,\)\) takes the arrays to 1600 bytes, "
                                         r"over the limit of 1000 bytes"):
        minidl.load(path, max_bytes=1000)
    assert list(minidl.load(path, select=lambda name: name == "a", max_bytes=1000)) == ["a"]


def test_a_model_too_large_for_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import models

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(models, "SegNetSmall", out_of_memory)  # a real --init-features 100000 would page first
    status, _, err = run_main(TINY + ["--init-features", "100000", "--out", str(tmp_path / "run")], capsys)
    assert "--init-features 100000: the model's weights do not fit in memory" in one_line_error(status, err)


def test_a_blank_coursework_task_is_one_line(tmp_path, capsys, monkeypatch):
    def blank(x):
        raise NotImplementedError("relu: implement relu_forward_inplace, see docs/activations.md")

    monkeypatch.setattr(minidl.nn.activation, "relu_forward_inplace", blank)
    status, _, err = run_main(TINY + ["--out", str(tmp_path / "run")], capsys)
    assert "relu: implement relu_forward_inplace, see docs/activations.md (a coursework task" in one_line_error(
        status, err)

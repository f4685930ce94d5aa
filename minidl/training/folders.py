"""Output folders: whether one can be written, whether it holds a run, and what a resumed run may do to it.

A run folder holds a run when it has ``last.npz`` or ``best.npz``. Two checkpoints belong to the same
run when their settings agree (but for ``epochs``, ``device`` and the dataset's location), so do their
datasets' fingerprints where both have one, and so does their history over the epochs both have finished.
"""
import os
import shutil
from dataclasses import asdict

import numpy

from ..serialization import atomic_output, probe_writable
from .checkpoint import read_checkpoint
from .errors import CheckpointError, ConfigError

RUN_FILES = ("last.npz", "best.npz")
SETTINGS_A_RUN_MAY_CHANGE = ("epochs", "device", "engine", "data")


def _nearest_existing(path):
    """``path`` (absolute) or the nearest of its parents that exists; None when not even its root does (an
    unmapped drive or share on Windows)."""
    folder = os.path.abspath(path)
    while not os.path.lexists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    return folder


def check_output_folder(path, option="--out"):
    """Raise ``ConfigError`` naming ``option`` unless ``path`` is, or can be made, a folder this process writes to.

    Nothing is created: a temporary file is made and removed in ``path`` or its nearest existing parent.
    """
    existing = _nearest_existing(path)
    if existing is None:
        raise ConfigError(f"{option} {path}: not even its drive or share exists")
    if not os.path.isdir(existing):
        what = "it" if existing == os.path.abspath(path) else existing
        raise ConfigError(f"{option} {path}: {what} exists and is not a folder")
    try:
        probe_writable(existing)
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot write in {existing} ({error.strerror or error})") from None


def run_files(run_dir):
    """The paths of the run checkpoints (``RUN_FILES``) that ``run_dir`` holds."""
    return [path for path in (os.path.join(run_dir, name) for name in RUN_FILES) if os.path.exists(path)]


def check_new_run_folder(run_dir):
    """Refuse a run folder that already holds a run."""
    if run_files(run_dir):
        raise ConfigError(f"--out {run_dir} already holds a run; continue it with --resume {run_dir} "
                          "or choose another --out")


def same_run(first, second):
    """Whether two checkpoints (read by ``read_checkpoint``) belong to one run (see the module docstring)."""
    settings = [{key: value for key, value in asdict(checkpoint["config"]).items()
                 if key not in SETTINGS_A_RUN_MAY_CHANGE} for checkpoint in (first, second)]
    datasets = {first["dataset"], second["dataset"]} - {None}
    finished = min(first["epoch"], second["epoch"])
    same_history = first["history"].keys() == second["history"].keys() and all(
        numpy.array_equal(first["history"][column][:finished], second["history"][column][:finished])
        for column in first["history"])
    return settings[0] == settings[1] and len(datasets) <= 1 and same_history


def _counted(count, noun):
    return f"{count} {noun}{'s' * (count != 1)}"


def _position(checkpoint):
    """How far a checkpoint has trained, in words."""
    epoch, step = checkpoint["epoch"], checkpoint["step"]
    return _counted(epoch, "epoch") + (f" and {_counted(step, 'step')} of epoch {epoch + 1}" if step else "")


def _held_run(path, run_dir):
    """The checkpoint at ``path`` in ``run_dir``, read without weights; unreadable is a ``ConfigError``."""
    try:
        return read_checkpoint(path, weights=False)
    except CheckpointError as error:
        raise ConfigError(f"{run_dir} holds {os.path.basename(path)}, which cannot be read ({error}); "
                          "move it away or choose another --out") from None


def check_resume_folder(checkpoint, run_dir):
    """Refuse to resume ``checkpoint`` into a folder that holds another run, or a checkpoint further on."""
    for path in run_files(run_dir):
        if os.path.samefile(path, checkpoint["path"]):
            continue
        held = _held_run(path, run_dir)
        if not same_run(held, checkpoint):
            raise ConfigError(f"{run_dir} holds another run ({path}); resuming {checkpoint['path']} there would "
                              "overwrite it: choose another --out")
        if (held["epoch"], held["step"]) > (checkpoint["epoch"], checkpoint["step"]):
            raise ConfigError(f"--resume {checkpoint['path']} has trained {_position(checkpoint)} but {path} has "
                              f"trained {_position(held)}; resuming would overwrite it: continue from it with "
                              f"--resume {path}, or give --out NEW_FOLDER to branch off from the older checkpoint")


def best_epoch(history):
    """The (1-based) epoch of the best validation Dice in a history, the first of equals; None before any."""
    dice = history.get("val_dice", [])
    return int(numpy.argmax(dice)) + 1 if len(dice) else None


def _is_best_of(path, checkpoint, epoch):
    """Whether the file at ``path`` is the checkpoint ``checkpoint``'s run wrote at the end of epoch ``epoch``."""
    try:
        held = read_checkpoint(path, weights=False)
    except CheckpointError:
        return False
    return same_run(held, checkpoint) and (held["epoch"], held["step"]) == (epoch, 0)


def carry_best(checkpoint, run_dir):
    """Put the best checkpoint of ``checkpoint``'s history into ``run_dir/best.npz``; returns whether it is there.

    The source is ``run_dir``'s own best.npz, the best.npz beside ``checkpoint``, or ``checkpoint`` itself
    when it was written at the end of the best epoch. True too when no epoch has finished (no best yet).
    """
    epoch, target = best_epoch(checkpoint["history"]), os.path.join(run_dir, "best.npz")
    if epoch is None:
        return True
    for source in (target, os.path.join(os.path.dirname(checkpoint["path"]), "best.npz"), checkpoint["path"]):
        if os.path.exists(source) and _is_best_of(source, checkpoint, epoch):
            if not (os.path.exists(target) and os.path.samefile(source, target)):
                with atomic_output(target) as temporary:
                    shutil.copyfile(source, temporary)
            return True
    return False

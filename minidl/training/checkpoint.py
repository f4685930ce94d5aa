"""Checkpoints: one npz of arrays and numbers, written atomically with ``minidl.save``, read without pickle.

Keys: ``model.<name>`` (the model's state_dict), ``optim.<key>`` (the
optimizer's flat state_dict), ``epoch`` and ``step`` (where training resumes:
``step`` batches of ``epoch`` are done), ``rng.state`` (the PCG64 state and
increment of the epoch's generator at the start of that epoch, as four 64-bit
words) with ``rng.has_uint32`` and ``rng.uinteger``, ``config`` (the run's
settings as a JSON string array), ``history.<column>`` (per-epoch metrics),
``best_dice``, ``partial.*`` (the running sums of an interrupted epoch) and, for a
dataset folder, ``dataset`` (``minidl/training/data.py::dataset_fingerprint``).
"""
import os

import numpy

from ..serialization import load, save
from .config import TrainConfig
from .errors import CheckpointError

WORD = (1 << 64) - 1


def rng_state_arrays(generator):
    """A numpy Generator's PCG64 state as arrays: {"rng.state": uint64 (4,), "rng.has_uint32", "rng.uinteger"}."""
    state = generator.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise TypeError(f"rng_state_arrays: only PCG64 generators are supported, got {state['bit_generator']}")
    inner = state["state"]
    words = [inner["state"] >> 64, inner["state"] & WORD, inner["inc"] >> 64, inner["inc"] & WORD]
    return {"rng.state": numpy.array(words, dtype=numpy.uint64),
            "rng.has_uint32": numpy.int64(state["has_uint32"]), "rng.uinteger": numpy.uint64(state["uinteger"])}


def generator_from_arrays(arrays):
    """The numpy Generator whose state ``rng_state_arrays`` wrote."""
    high_state, low_state, high_inc, low_inc = (int(word) for word in arrays["rng.state"])
    bit_generator = numpy.random.PCG64()
    bit_generator.state = {"bit_generator": "PCG64",
                           "state": {"state": (high_state << 64) | low_state, "inc": (high_inc << 64) | low_inc},
                           "has_uint32": int(arrays["rng.has_uint32"]), "uinteger": int(arrays["rng.uinteger"])}
    return numpy.random.Generator(bit_generator)


def save_checkpoint(path, model, optimizer, config, epoch, step, generator, history, best_dice, partial=None,
                    dataset=None):
    """Write everything a run needs to continue exactly (see the module docstring)."""
    state = {f"model.{name}": value for name, value in model.state_dict().items()}
    state.update({f"optim.{key}": value for key, value in optimizer.state_dict().items()})
    state.update(rng_state_arrays(generator))
    state.update({f"history.{column}": numpy.asarray(values, dtype=numpy.float64)
                  for column, values in history.items()})
    state.update({f"partial.{key}": value for key, value in (partial or {}).items()})
    state.update({"epoch": epoch, "step": step, "best_dice": best_dice, "config": numpy.array(config.to_json())})
    if dataset is not None:
        state["dataset"] = numpy.array(dataset)
    save(path, state)


def _described(value):
    return f"dtype {value.dtype}, shape {value.shape}"


def _number(flat, key, path, kinds="iu", least=None):
    """``flat[key]`` as a Python int (``kinds`` "iu") or float ("iuf"); anything else is a ``CheckpointError``."""
    value, wanted = flat[key], "an integer" if kinds == "iu" else "a number"
    if value.shape != () or value.dtype.kind not in kinds:
        raise CheckpointError(f"checkpoint {path}: field '{key}' must be {wanted}, got {_described(value)}")
    number = int(value) if kinds == "iu" else float(value)
    if least is not None and number < least:
        raise CheckpointError(f"checkpoint {path}: field '{key}' is {number}, below {least}")
    return number


def _generator(flat, path):
    """The generator of the ``rng.*`` fields; a malformed one is a ``CheckpointError`` naming the field."""
    words = flat["rng.state"]
    if words.shape != (4,) or words.dtype != numpy.uint64:
        raise CheckpointError(f"checkpoint {path}: field 'rng.state' must be 4 uint64 words, got {_described(words)}")
    for key in ("rng.has_uint32", "rng.uinteger"):
        _number(flat, key, path, least=0)
    try:
        return generator_from_arrays(flat)
    except (ValueError, TypeError, OverflowError) as error:
        raise CheckpointError(f"checkpoint {path}: fields 'rng.*' are not a PCG64 state ({error})") from None


def _config(flat, path):
    """The ``TrainConfig`` of the ``config`` field (a JSON string), validated."""
    text = flat["config"]
    if text.shape != () or text.dtype.kind != "U":
        raise CheckpointError(f"checkpoint {path}: field 'config' must be a JSON string, got {_described(text)}")
    try:
        return TrainConfig.from_json(str(text)).validate()
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: field 'config' is unreadable ({error})") from None


def _dataset(flat, path):
    """The ``dataset`` field (a string), or None where the checkpoint has none (the synthetic set, older runs)."""
    if "dataset" not in flat:
        return None
    text = flat["dataset"]
    if text.shape != () or text.dtype.kind != "U":
        raise CheckpointError(f"checkpoint {path}: field 'dataset' must be a string, got {_described(text)}")
    return str(text)


def _check_progress_fields(flat, epoch, path):
    """Each ``history.*`` column must hold one number per finished epoch, each ``partial.*`` sum one number."""
    for key, value in flat.items():
        if key.startswith("history.") and (value.dtype.kind not in "iuf" or value.shape != (epoch,)):
            raise CheckpointError(f"checkpoint {path}: field '{key}' must hold {epoch} numbers (one per finished "
                                  f"epoch), got {_described(value)}")
        if key.startswith("partial."):
            _number(flat, key, path, "iuf")


REQUIRED = ("config", "epoch", "step", "rng.state", "rng.has_uint32", "rng.uinteger", "best_dice")
WEIGHT_SECTIONS = ("model.", "optim.")
PROGRESS_SECTIONS = ("history.", "partial.")


SMALL_FIELDS_LIMIT = 64 << 20  # bytes all fields but the weights may declare: a million epochs of history


def _small_field(name):
    """Whether ``name`` is a field ``read_checkpoint`` reads besides the weights; no other entry is ever read."""
    return name in REQUIRED or name == "dataset" or name.startswith(PROGRESS_SECTIONS)


def _read_fields(path, weights):
    """The checkpoint's fields, read in two passes: the small ones (settings, position, history) under
    ``SMALL_FIELDS_LIMIT``, then, with ``weights``, the model and optimizer arrays under the memory limit."""
    flat = load(path, select=_small_field, max_bytes=SMALL_FIELDS_LIMIT)
    if weights:
        flat.update(load(path, select=lambda name: name.startswith(WEIGHT_SECTIONS)))
    return flat


def checkpoint_file(path):
    """The checkpoint file ``path`` names: itself, or in a run folder its last.npz, else its best.npz (a run
    killed before its first last.npz was written), else the missing last.npz (for the error to name)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return path
    last, best = os.path.join(path, "last.npz"), os.path.join(path, "best.npz")
    return best if not os.path.exists(last) and os.path.exists(best) else last


def read_checkpoint(path, weights=True):
    """Load a checkpoint: a dict with "model", "optim", "history", "partial" sub-dicts, "config" and the rest.

    ``path`` is a file or a run folder: its last.npz, or its best.npz when a run was stopped before writing
    last.npz. ``weights=False`` skips the model and optimizer arrays (their sub-dicts stay empty): the
    position, history and settings alone, cheaply. Entries of no known field are not read at all, and every
    entry's declared size is checked before any is read (``minidl.load``). Raises ``CheckpointError`` naming
    the file (and the field) when it is missing, unreadable, not a minidl checkpoint or has a malformed field.
    """
    path = checkpoint_file(path)
    try:
        flat = _read_fields(path, weights)
    except (FileNotFoundError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    if any(key not in flat for key in REQUIRED):
        raise CheckpointError(f"checkpoint {path}: not a train_lung checkpoint (needs {', '.join(REQUIRED)})")
    sections = {"model": {}, "optim": {}, "history": {}, "partial": {}}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        if section in sections:
            sections[section][name] = value
    epoch = _number(flat, "epoch", path, least=0)
    _check_progress_fields(flat, epoch, path)
    return {**sections, "path": path, "config": _config(flat, path), "epoch": epoch,
            "step": _number(flat, "step", path, least=0), "best_dice": _number(flat, "best_dice", path, "iuf"),
            "generator": _generator(flat, path), "dataset": _dataset(flat, path)}


def _reason(error):
    """An exception's message (a KeyError's without the quotes ``str`` adds)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def _load_into(target, state, checkpoint, what):
    """``target.load_state_dict(state)``; a missing, unexpected, mis-shaped or mis-typed key is a ``CheckpointError``.

    ``what`` reads on with "not fit the model": "weights do", "optimizer state does".
    """
    try:
        target.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {checkpoint['path']}: {what} not fit the model "
                              f"({_reason(error)})") from None


def load_model_weights(model, checkpoint):
    """Copy a checkpoint's weights into ``model``; a key that does not fit is a ``CheckpointError``."""
    _load_into(model, checkpoint["model"], checkpoint, "weights do")


def load_optimizer_state(optimizer, checkpoint):
    """Restore a checkpoint's optimizer state into ``optimizer``; a key that does not fit is a ``CheckpointError``."""
    _load_into(optimizer, checkpoint["optim"], checkpoint, "optimizer state does")

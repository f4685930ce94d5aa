#!/usr/bin/env python
"""Lung segmentation on chest X-rays with minidl: train, predict, evaluate.

    python train_lung.py [options]                                    train (SegNetSmall, synthetic set)
    python train_lung.py --data DIR [options]                         train on a downloaded dataset
    python train_lung.py --make-synthetic DIR N                       write N synthetic pairs (Kaggle layout)
    python train_lung.py predict --checkpoint C IMAGES... --out DIR   masks and overlays at original size
    python train_lung.py evaluate --checkpoint C --data DIR           Dice and IoU on a dataset, worst cases
    python train_lung.py --inspect [options]                          train, writing gradient-flow pictures
    python train_lung.py saliency --checkpoint C IMAGES... --out DIR  d loss / d input for image files

Bad input and system faults (a full disk, permissions) give a clear error (one line, or a line per bad file
of a dataset) and exit status 2; Ctrl-C, SIGTERM and SIGHUP save last.npz and exit with 128 + the signal
(130, 143, 129); one run at a time may write a run folder.
"""
import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import fields, replace

import numpy

from minidl.backend import loop_over_strided_rows, reuse_freed_host_memory
from minidl.engines import DEFAULT_ENGINE, ENGINES, get_engine, set_engine
from minidl.data import DataError, default_cache_dir, find_pairs, write_layout
from minidl.training import (CheckpointError, ConfigError, NonFiniteLoss, Trainer, TrainConfig, TrainingInterrupted,
                             evaluate, evaluate_folder, load_examples, load_trained_model, predict_files,
                             read_checkpoint, split_examples)
from minidl.training.config import LOSSES, MODEL_STRIDES, OPTIMIZERS
from minidl.training.data import check_split, dataset_fingerprint
from minidl.training.folders import (SETTINGS_A_RUN_MAY_CHANGE, best_epoch, carry_best, check_new_run_folder,
                                     check_output_folder, check_resume_folder)
from minidl.training.lock import folder_lock
from minidl.training.loop import STOP_SIGNALS, StopSignal, raise_stop_signal
from minidl.training.inspection import InspectedTrainer, saliency_files
from minidl.training.plots import plot_worst_cases

FLAGS = {"augment": "--no-augment"}  # the flags not named --<setting>
DEFAULTS = TrainConfig()
WORST_SHOWN = 5  # images named, and drawn in the gallery, by evaluate
GALLERY_NAME = "worst_cases.png"
MAKE_SYNTHETIC_SEED = 2024  # not the training default, so a written set is unseen by a default run


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2), as every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def train_parser():
    parser = Parser(prog="train_lung.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    option = parser.add_argument
    option("--data", help="dataset folder (Kaggle, Montgomery, Shenzhen or images/+masks/ layout); "
                          "default: the built-in synthetic set")
    option("--make-synthetic", nargs=2, metavar=("DIR", "N"),
           help=f"write N synthetic 256x256 pairs in the Kaggle layout to DIR and exit (seed: --seed, default "
                f"{MAKE_SYNTHETIC_SEED})")
    option("--synthetic-count", type=int, help=f"synthetic images to train on (default {DEFAULTS.synthetic_count})")
    option("--model", help=f"one of {', '.join(MODEL_STRIDES)} (default {DEFAULTS.model})")
    option("--init-features", type=int, help="first layer width (default: the model's own; 16 for segnet_small)")
    option("--epochs", type=int, help=f"default {DEFAULTS.epochs}")
    option("--batch-size", type=int, help=f"default {DEFAULTS.batch_size}")
    option("--size", type=int, help=f"train at SIZE x SIZE pixels (default {DEFAULTS.size})")
    option("--lr", type=float, help=f"learning rate (default {DEFAULTS.lr})")
    option("--lr-decay", type=float, help=f"learning rate factor per epoch (default {DEFAULTS.lr_decay})")
    option("--optimizer", help=f"{' or '.join(OPTIMIZERS)} (default {DEFAULTS.optimizer})")
    option("--weight-decay", type=float, help="default 0")
    option("--loss", help=f"{', '.join(LOSSES)} (ce trains 2-class logits; default {DEFAULTS.loss})")
    option("--device", help="cpu or gpu (default cpu)")
    option("--engine", help="reference (the plain ops the docs derive)" + (" or fast" if "fast" in ENGINES else "") +
                            f" (default: MINIDL_ENGINE, else {DEFAULT_ENGINE}; a resumed run keeps its own)")
    option("--seed", type=int, help="seeds the model, the synthetic set, the split and the augmentation (default 0)")
    option("--val-fraction", type=float, help=f"validation share (default {DEFAULTS.val_fraction})")
    option("--test-fraction", type=float, help="held-out test share, reported at the end (default 0)")
    option("--no-augment", action="store_true", help="train without rotation/scale/shift/brightness changes")
    option("--out", help="run folder (default runs/<date-time>)")
    option("--resume", metavar="CHECKPOINT", help="continue a run from last.npz (or its folder); only --epochs, "
                                                  "--device, --engine, --out and --data (the same dataset, moved) "
                                                  "may be given "
                                                  "with it; --out must not hold another run")
    option("--cache-dir", help=f"where decoded images are cached (default {default_cache_dir()})")
    option("--no-cache", action="store_true", help="do not cache decoded images")
    option("--quiet", action="store_true", help="no progress bars (training and image decoding)")
    option("--inspect", action="store_true",
           help="watch backprop: after every epoch write layer_stats.csv, gradient_flow.png, activations.png, "
                "update_ratios.png and saliency.png in the run folder")
    parser.epilog = ("subcommands: predict --checkpoint C IMAGES... --out DIR | evaluate --checkpoint C --data DIR | "
                     "saliency --checkpoint C IMAGES... --out DIR")
    return parser


def predict_parser():
    parser = Parser(prog="train_lung.py predict", description="lung masks and overlays at each image's size")
    parser.add_argument("--checkpoint", required=True, help="best.npz / last.npz, or a run folder")
    parser.add_argument("images", nargs="+", metavar="IMAGES")
    parser.add_argument("--out", required=True, help="folder for <name>_mask.png and <name>_overlay.png")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace mask and overlay files already in --out (never an input image)")
    parser.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=True,
                        help="keep the two largest lung regions and fill their holes (default: on)")
    return parser


def evaluate_parser():
    parser = Parser(prog="train_lung.py evaluate", description="Dice and IoU of a checkpoint on a dataset")
    parser.add_argument("--checkpoint", required=True, help="best.npz / last.npz, or a run folder")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--cache-dir", help="where decoded images are cached")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=True,
                        help="score the masks cleaned as predict cleans them (default: on)")
    parser.add_argument("--gallery", help=f"picture of the {WORST_SHOWN} images of lowest Dice (default: "
                                          f"{GALLERY_NAME} beside the checkpoint)")
    return parser


def saliency_parser():
    parser = Parser(prog="train_lung.py saliency",
                    description="d loss / d input of a trained model for image files (<name>_saliency.png), the "
                                "loss taken against the model's own prediction")
    parser.add_argument("--checkpoint", required=True, help="best.npz / last.npz, or a run folder")
    parser.add_argument("images", nargs="+", metavar="IMAGES")
    parser.add_argument("--out", required=True, help="folder for <name>_saliency.png")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace saliency maps already in --out (never an input image)")
    return parser


def cache_dir_of(args):
    return None if args.no_cache else (args.cache_dir or default_cache_dir())


def explicit_settings(args):
    """The TrainConfig fields given on the command line."""
    given = {field.name: getattr(args, field.name) for field in fields(TrainConfig)
             if getattr(args, field.name, None) is not None}
    if args.no_augment:
        given["augment"] = False
    if "data" in given:
        given["data"] = os.path.abspath(given["data"])
    return given


def first_file_in(folder):
    """The path of some file under ``folder`` (searched recursively), or None when it holds none."""
    for parent, _, names in os.walk(folder, onerror=lambda error: None):
        if names:
            return os.path.join(parent, sorted(names)[0])
    return None


def make_synthetic(args):
    directory, count = args.make_synthetic
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"--make-synthetic {directory} {count}: N must be a positive integer")
    seed = MAKE_SYNTHETIC_SEED if args.seed is None else args.seed
    replace(DEFAULTS, seed=seed).validate()  # the --seed check of a training run
    check_output_folder(directory, "--make-synthetic")
    held = first_file_in(directory)
    if held is not None:
        raise ConfigError(f"--make-synthetic {directory}: the folder already holds files (such as {held}), which "
                          "synthetic files of the same names would replace; give a new or empty folder")
    root = write_layout(directory, "kaggle", int(count), seed, size=256)
    print(f"wrote {count} synthetic image/mask pairs (Kaggle layout) to {root}; "
          f"train on them with: python train_lung.py --data {directory}")
    return 0


def flag_of(setting):
    """The command-line flag that sets a TrainConfig field."""
    return FLAGS.get(setting, "--" + setting.replace("_", "-"))


def prepare_run(args):
    """(config, run folder, checkpoint or None) for a new or resumed run, with every check that needs no data."""
    given = explicit_settings(args)
    if args.resume:
        return prepare_resume(args, given)
    config = replace(DEFAULTS, **{"engine": get_engine(), **given}).validate()
    run_dir = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    check_output_folder(run_dir)
    return config, run_dir, None


def prepare_resume(args, given):
    """``prepare_run`` for --resume: only SETTINGS_A_RUN_MAY_CHANGE may be given, and the run folder (the
    checkpoint's, or --out) must be writable. A run folder without last.npz resumes from its best.npz."""
    checkpoint = read_checkpoint(args.resume)
    if os.path.isdir(args.resume) and os.path.basename(checkpoint["path"]) == "best.npz":
        print(f"{args.resume} has no last.npz (a run stopped before writing it); resuming from its best.npz")
    refused = sorted(flag_of(setting) for setting in set(given) - set(SETTINGS_A_RUN_MAY_CHANGE))
    if refused:
        raise ConfigError(f"--resume continues a run with its saved settings; drop {', '.join(refused)}")
    if "data" in given and checkpoint["config"].data is None:
        raise ConfigError(f"--data {args.data}: checkpoint {checkpoint['path']} trained on the synthetic set; "
                          "drop --data")
    config = replace(checkpoint["config"], **given).validate()
    run_dir = args.out or os.path.dirname(os.path.abspath(checkpoint["path"]))
    if args.out:
        check_output_folder(run_dir)
    else:
        try:
            check_output_folder(run_dir, "the checkpoint's folder")
        except ConfigError as error:
            raise ConfigError(f"{error}; resume into another folder with --out NEW_FOLDER") from None
    return config, run_dir, checkpoint


def check_run_folder(run_dir, checkpoint):
    """A new run's folder must hold no run; a resumed run's no other run and no checkpoint further on.
    Checked while the folder's lock is held, so no other process can write there in between."""
    if checkpoint is None:
        check_new_run_folder(run_dir)
    else:
        check_resume_folder(checkpoint, run_dir)


def check_dataset(config, checkpoint):
    """The checks on the dataset that need no decoding: the stored folder of a resumed run, the split, and that a
    resumed run finds the images it trained on. Returns the folder's ``dataset_fingerprint`` (None: synthetic)."""
    if checkpoint is not None and config.data is not None and config.data == checkpoint["config"].data \
            and not os.path.isdir(config.data):
        raise ConfigError(f"checkpoint {checkpoint['path']} trained on the dataset folder {config.data}, which no "
                          "longer exists; if the dataset moved, give its new location with --data")
    pairs = None if config.data is None else find_pairs(config.data).pairs  # listed once for both checks
    check_split(config, pairs)
    fingerprint = dataset_fingerprint(config, pairs)
    trained_on = checkpoint["dataset"] if checkpoint is not None else None
    if trained_on is not None and fingerprint != trained_on:
        raise ConfigError(f"--data {config.data} now holds {fingerprint}, but checkpoint {checkpoint['path']} "
                          f"trained on {trained_on}: not the same images, so the run cannot continue exactly; "
                          "start a new run (another --out) to train on this folder")
    return fingerprint


def done_message(history, run_dir, checkpoint, best_carried):
    """The last line of training: the best epoch, and where its weights are."""
    best = best_epoch(history)
    where = f"outputs in {run_dir}"
    if checkpoint is not None and best <= checkpoint["epoch"] and not best_carried:
        where += (f" (no best.npz there: none for epoch {best} was found beside {checkpoint['path']} to carry "
                  "over)")
    return (f"done: best val Dice {history['val_dice'][best - 1]:.4f} (IoU {history['val_iou'][best - 1]:.4f}) at "
            f"epoch {best}; total {sum(history['seconds']):.0f} s of training; {where}")


def train_command(args):
    config, run_dir, checkpoint = prepare_run(args)
    if checkpoint is not None and checkpoint["epoch"] >= config.epochs:
        print(f"{checkpoint['path']} has already trained {checkpoint['epoch']} of {config.epochs} epochs; "
              "give a larger --epochs to train on")
        return 0
    with folder_lock(run_dir):
        check_run_folder(run_dir, checkpoint)
        return train_locked(args, config, run_dir, checkpoint)


def train_locked(args, config, run_dir, checkpoint):
    """Train (or resume) into ``run_dir``, whose lock this process holds."""
    if config.engine is not None:
        set_engine(config.engine)
    fingerprint = check_dataset(config, checkpoint)
    trainer = (InspectedTrainer if args.inspect else Trainer)(config, run_dir, progress=not args.quiet,
                                                              dataset=fingerprint)
    if checkpoint is not None:
        trainer.resume(checkpoint)  # a checkpoint that does not fit the model fails here, before the data loads
    examples = load_examples(config, cache_dir_of(args), progress=not args.quiet)
    splits = split_examples(config, *examples)
    print(f"{len(splits['train'][0])} training / {len(splits['val'][0])} validation images; model {config.model}, "
          f"{config.optimizer} lr {config.lr}, loss {config.loss}, {config.epochs} epochs of batch "
          f"{config.batch_size}, {config.device}, {get_engine()} engine; run folder {run_dir}")
    best_carried = checkpoint is not None and carry_best(checkpoint, run_dir)
    if checkpoint is not None:
        print(f"resuming {checkpoint['path']} at epoch {checkpoint['epoch'] + 1}, step {checkpoint['step']}")
    history = trainer.fit(splits)
    print(done_message(history, run_dir, checkpoint, best_carried))
    if len(splits["test"][0]):
        metrics, _ = evaluate(trainer.model, trainer.loss, config.loss, *splits["test"], config.batch_size,
                              config.device)
        print(f"test: Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f} on {len(splits['test'][0])} images "
              "(last weights)")
    return 0


def postprocessing_report(changes):
    """One line saying how much ``predict``'s cleaning changed the masks ({input path: changed fraction})."""
    changed = {path: fraction for path, fraction in changes.items() if fraction > 0}
    if not changed:
        return f"postprocessing (two largest regions, holes filled) changed none of the {len(changes)} masks"
    worst = max(changed, key=changed.get)
    mean = sum(changed.values()) / len(changed)
    return (f"postprocessing (two largest regions, holes filled) changed {len(changed)} of {len(changes)} masks, "
            f"by {100 * mean:.1f}% of the lung area on average, at most {100 * changed[worst]:.1f}% "
            f"({os.path.basename(worst)}); --no-postprocess writes the raw masks")


def predict_command(argv):
    args = predict_parser().parse_args(argv)
    check_output_folder(args.out)
    model, config = load_trained_model(args.checkpoint, args.device)
    with folder_lock(args.out):
        written, changes = predict_files(model, config, args.images, args.out, args.device, args.overwrite,
                                         args.postprocess)
    print(f"wrote {len(written)} files for {len(args.images)} images to {args.out}")
    if args.postprocess:
        print(postprocessing_report(changes))
    return 0


def gallery_path(args):
    """Where evaluate draws its worst cases: --gallery, or GALLERY_NAME in the checkpoint's folder."""
    if args.gallery:
        return args.gallery
    folder = args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint)
    return os.path.join(folder, GALLERY_NAME)


def dice_distribution(metrics):
    """Two lines: the per-image Dice's quartiles and extremes, and the worst images by name."""
    dice, names = metrics["per_image_dice"], metrics["names"]
    low, median, high = numpy.percentile(dice, [25, 50, 75])
    worst = numpy.argsort(dice, kind="stable")[:WORST_SHOWN]
    return (f"per-image Dice: median {median:.4f}, quartiles {low:.4f}-{high:.4f}, range "
            f"{dice.min():.4f}-{dice.max():.4f}\n"
            f"lowest Dice: {', '.join(f'{names[index]} {dice[index]:.4f}' for index in worst)}")


def evaluate_command(argv):
    args = evaluate_parser().parse_args(argv)
    gallery = gallery_path(args)
    if os.path.isdir(gallery):
        raise ConfigError(f"--gallery {gallery} is a folder; give the picture's file name")
    if os.path.realpath(gallery).startswith(os.path.join(os.path.realpath(args.data), "")):
        raise ConfigError(f"--gallery {gallery} lies inside --data {args.data}, where it would add a file to the "
                          "dataset or replace one of its images; write it elsewhere")
    check_output_folder(os.path.dirname(os.path.abspath(gallery)), "--gallery")
    model, config = load_trained_model(args.checkpoint, args.device)
    metrics = evaluate_folder(model, config, args.data, cache_dir_of(args), args.device,
                              postprocess=args.postprocess)
    cleaned = f" (postprocessed; raw masks: Dice {metrics['raw_dice']:.4f})" if args.postprocess else ""
    print(f"Dice {metrics['dice']:.4f}  IoU {metrics['iou']:.4f}  loss {metrics['loss']:.4f}  "
          f"on {metrics['count']} images at {config.size}x{config.size}{cleaned}")
    print(dice_distribution(metrics))
    plot_worst_cases(metrics["images"], metrics["masks"], metrics["predicted"], metrics["names"],
                     metrics["per_image_dice"], gallery, WORST_SHOWN)
    print(f"the {min(WORST_SHOWN, metrics['count'])} images of lowest Dice are drawn in {gallery}")
    return 0


def saliency_command(argv):
    args = saliency_parser().parse_args(argv)
    check_output_folder(args.out)
    model, config = load_trained_model(args.checkpoint, args.device)
    written = saliency_files(model, config, args.images, args.out, args.overwrite)
    print(f"wrote {len(written)} saliency map{'s' * (len(written) != 1)} to {args.out}")
    return 0


def run(argv):
    if argv and argv[0] in ("predict", "evaluate") and "--inspect" in argv:
        raise ConfigError(f"--inspect watches training; {argv[0]} does not train (for the input gradients of a "
                          "trained model use: train_lung.py saliency --checkpoint C IMAGES... --out DIR)")
    if argv and argv[0] == "saliency":
        return saliency_command(argv[1:])
    if argv and argv[0] == "predict":
        return predict_command(argv[1:])
    if argv and argv[0] == "evaluate":
        return evaluate_command(argv[1:])
    args = train_parser().parse_args(argv)
    if args.make_synthetic and args.inspect:
        raise ConfigError("--inspect watches training; --make-synthetic only writes a dataset")
    return make_synthetic(args) if args.make_synthetic else train_command(args)


def system_error_text(error):
    """An ``OSError`` in one line: the file and the reason."""
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


def main(argv=None):
    """Run the program; returns the exit status: 2 for bad input, a system fault (disk full, permissions,
    out of memory) or a coursework task not written yet, 1 for a diverged run, 128 + the signal after Ctrl-C (130), SIGTERM (143) or SIGHUP (129)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        get_engine()  # a bad MINIDL_ENGINE is bad input too
    except ValueError as error:
        print(f"train_lung.py: error: {error}", file=sys.stderr)
        return 2
    reuse_freed_host_memory()
    numpy_buffer_size, handlers = numpy.getbufsize(), {}
    try:
        loop_over_strided_rows()
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                if number != signal.SIGINT:
                    handlers[number] = signal.signal(number, raise_stop_signal)
        return run(argv)
    except (DataError, ConfigError, CheckpointError) as error:
        print(f"train_lung.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"train_lung.py: error: {system_error_text(error)}; files written before are kept", file=sys.stderr)
        return 2
    except NotImplementedError as error:
        print(f"train_lung.py: error: {error} (a coursework task this copy has not written yet)", file=sys.stderr)
        return 2
    except MemoryError:
        print("train_lung.py: error: out of memory; try a smaller --size, --batch-size or --init-features",
              file=sys.stderr)
        return 2
    except NonFiniteLoss as error:
        print(f"train_lung.py: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        print(f"train_lung.py: {stop}", file=sys.stderr)
        return 128 + stop.signal_number
    except StopSignal as stop:
        print(f"train_lung.py: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signal_number
    except KeyboardInterrupt:
        print("train_lung.py: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        numpy.setbufsize(numpy_buffer_size)
        for number, handler in handlers.items():
            signal.signal(number, handler)


if __name__ == "__main__":
    sys.exit(main())

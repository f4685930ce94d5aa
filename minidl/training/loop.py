"""The training loop: epochs of augmented mini-batches, validation, checkpoints, history and plots.

Every random choice of epoch e (the data order, then each batch's
augmentation) comes from one generator seeded with (seed, e), so a run
resumed from a checkpoint, even one written mid-epoch by Ctrl-C, replays the
same stream and ends with weights equal to an uninterrupted run's.
"""
import copy
import csv
import math
import os
import signal
import threading
import time
from contextlib import contextmanager

import numpy
from tqdm import tqdm

from .. import manual_seed
from ..backend import read_back, to_device
from ..serialization import atomic_output
from ..data import apply_augmentation, draw_augmentation
from .builders import build_loss, build_model, build_optimizer, check_device, loss_target, lung_probability
from .checkpoint import load_model_weights, load_optimizer_state, save_checkpoint
from .errors import CheckpointError, ConfigError, NonFiniteLoss
from .evaluation import dice_and_iou, evaluate
from .plots import plot_curves, plot_predictions

HISTORY_COLUMNS = ("epoch", "train_loss", "train_dice", "val_loss", "val_dice", "val_iou", "seconds")


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class TrainingInterrupted(Exception):
    """Ctrl-C or a stop signal ended training after a checkpoint was saved; the message says where.

    ``signal_number`` is the signal's (SIGINT for Ctrl-C): the program exits with 128 plus it.
    """

    def __init__(self, message, signal_number=signal.SIGINT):
        super().__init__(message)
        self.signal_number = int(signal_number)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside the training loop, raised as Ctrl-C's KeyboardInterrupt is (so every cleanup
    that Ctrl-C runs runs too); ``signal_number`` says which."""

    def __init__(self, signal_number):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = int(signal_number)


def raise_stop_signal(signum, frame):
    """A signal handler: SIGINT raises KeyboardInterrupt, SIGTERM and SIGHUP ``StopSignal``."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise StopSignal(signum)


@contextmanager
def interrupt_flag():
    """Within the block, Ctrl-C, SIGTERM and SIGHUP set ``flag["requested"]`` to the signal's number instead of
    raising (a second one raises, as ``raise_stop_signal``)."""
    flag = {"requested": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request_stop(signum, frame):
        if flag["requested"] is not None:
            raise_stop_signal(signum, frame)
        flag["requested"] = signum

    previous = {number: signal.signal(number, request_stop) for number in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def epoch_generator(seed, epoch):
    """The generator behind epoch ``epoch``'s data order and augmentation."""
    return numpy.random.default_rng([seed, epoch])


def read_sum(arrays):
    """The sum of 0-d arrays (host or device) as a Python float, read in one transfer; empties the list."""
    total = sum(read_back(arrays))
    arrays.clear()
    return total


class Trainer:
    """Trains ``config.model``; ``fit(splits)`` trains on ``splits["train"]``, validating on ``splits["val"]``.

    The model and optimizer are built (and a checkpoint resumed) before any data is needed, so a
    checkpoint that does not fit fails before a dataset is loaded. ``run_dir`` receives best.npz,
    last.npz, history.csv, curves.png and predictions.png.
    """

    def __init__(self, config, run_dir, log=print, progress=True, dataset=None):
        check_device(config.device)
        self.config, self.run_dir, self.log, self.progress = config, run_dir, log, progress
        self.dataset = dataset  # the folder's dataset_fingerprint, kept in every checkpoint
        manual_seed(config.seed)
        self.model = build_model(config).to(config.device)
        self.optimizer = build_optimizer(config, self.model.parameters())
        self.loss = build_loss(config.loss)
        self.history = {column: [] for column in HISTORY_COLUMNS}
        self.epoch, self.step, self.best_dice = 0, 0, -1.0
        self.generator = epoch_generator(config.seed, 0)
        self.partial, self.resumed_from = {}, None

    def resume(self, checkpoint):
        """Continue from a checkpoint read by ``read_checkpoint``: weights, optimizer, position, RNG, history."""
        load_model_weights(self.model, checkpoint)
        load_optimizer_state(self.optimizer, checkpoint)
        self.epoch, self.step, self.best_dice = checkpoint["epoch"], checkpoint["step"], checkpoint["best_dice"]
        self.generator = checkpoint["generator"]
        self.history = {column: [float(v) for v in checkpoint["history"].get(column, [])]
                        for column in HISTORY_COLUMNS}
        self.partial = {key: float(value) for key, value in checkpoint["partial"].items()}
        self.resumed_from = checkpoint["path"]

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def save(self, name, epoch, step, generator, partial=None):
        save_checkpoint(self.path(name), self.model, self.optimizer, self.config, epoch, step, generator,
                        self.history, self.best_dice, partial, self.dataset)

    def fit(self, splits):
        """Run the remaining epochs on ``splits``; returns the history. Raises TrainingInterrupted or NonFiniteLoss."""
        self.train_images, self.train_masks = splits["train"]
        self.val_images, self.val_masks = splits["val"]
        self._check_step()
        os.makedirs(self.run_dir, exist_ok=True)
        with interrupt_flag() as interrupt:
            for epoch in range(self.epoch, self.config.epochs):
                generator = self.generator if epoch == self.epoch else epoch_generator(self.config.seed, epoch)
                first_step = self.step if epoch == self.epoch else 0
                totals = self._train_epoch(epoch, generator, first_step, interrupt)
                self._end_epoch(epoch, totals)
        return self.history

    def _check_step(self):
        """There are training images, and a resumed mid-epoch position lies within an epoch of them."""
        if len(self.train_images) == 0:
            raise ConfigError("no training images: the split left every image to validation and test")
        batches = -(-len(self.train_images) // self.config.batch_size)
        if self.step >= batches:
            raise CheckpointError(f"checkpoint {self.resumed_from}: field 'step' is {self.step}, beyond the {batches} "
                                  f"batches of an epoch of these {len(self.train_images)} training images (another "
                                  "dataset, or a damaged checkpoint)")

    def _batches(self, generator):
        """Yield (indices, augmentation parameters or None) for one epoch, drawing from ``generator``."""
        order = generator.permutation(len(self.train_images))
        for start in range(0, len(order), self.config.batch_size):
            indices = order[start:start + self.config.batch_size]
            yield indices, draw_augmentation(generator, len(indices)) if self.config.augment else None

    def _train_epoch(self, epoch, generator, first_step, interrupt):
        config, count = self.config, len(self.train_images)
        epoch_start = copy.deepcopy(generator)
        self.optimizer.lr = config.lr * config.lr_decay ** epoch
        totals = {"loss": 0.0, "dice": 0.0, "images": 0.0, "seconds": 0.0}
        totals.update(self.partial if first_step else {})
        started = time.perf_counter() - totals["seconds"]
        bar = tqdm(total=count, initial=int(totals["images"]), desc=f"epoch {epoch + 1}/{config.epochs}",
                   unit="img", disable=not self.progress, leave=False, dynamic_ncols=True)
        self.model.train()
        dice_sums = []  # each step's summed Dice, left on the device until the epoch's end
        for step, (indices, augmentation) in enumerate(self._batches(generator)):
            if step < first_step:
                continue
            if interrupt["requested"] is not None:
                bar.close()
                totals["dice"] += read_sum(dice_sums)
                totals["seconds"] = time.perf_counter() - started
                self.save("last.npz", epoch, step, epoch_start, totals)
                cause = "" if interrupt["requested"] == signal.SIGINT else \
                    f" by {signal.Signals(interrupt['requested']).name}"
                raise TrainingInterrupted(f"interrupted{cause} in epoch {epoch + 1} after step {step}: saved "
                                          f"{self.path('last.npz')}; continue with --resume {self.run_dir}",
                                          interrupt["requested"])
            images, masks = self._batch_on_device(indices)
            if augmentation is not None:
                images, masks = apply_augmentation(images, masks, augmentation)
            value, dice_sum = self._train_step(images, masks, epoch, step)
            totals["loss"] += value * len(indices)
            dice_sums.append(dice_sum)
            totals["images"] += len(indices)
            bar.update(len(indices))
            bar.set_postfix(loss=f"{totals['loss'] / totals['images']:.4f}")
        bar.close()
        totals["dice"] += read_sum(dice_sums)
        totals["seconds"] = time.perf_counter() - started
        self.partial = {}
        return totals

    def _batch_on_device(self, indices):
        """The training images and masks at ``indices``, moved to the training device in one transfer, where
        they are augmented: a GPU is not kept waiting for the host."""
        images, masks = self.train_images[indices], self.train_masks[indices]
        batch = to_device(numpy.concatenate([images, masks.astype(images.dtype, copy=False)], axis=1),
                          self.config.device)
        return batch[:, :images.shape[1]], batch[:, images.shape[1]:].astype(masks.dtype, copy=False)

    def _train_step(self, images, masks, epoch, step):
        """One optimizer step on a batch on the training device; returns (loss value, summed per-image Dice of
        the batch as a 0-d array on the device). The loss value is the step's one read from the device."""
        x, target = images, loss_target(masks, self.config.loss, images.dtype)
        self.optimizer.zero_grad()
        logits = self.model(x)
        value = self.loss(logits, target)
        if not math.isfinite(value):
            kept = (f"the last good checkpoint {self.path('last.npz')} is kept"
                    if os.path.exists(self.path("last.npz")) else "no checkpoint had been written yet")
            raise NonFiniteLoss(f"the loss became {value} at epoch {epoch + 1}, step {step + 1}: training "
                                f"stopped; {kept}")
        self.model.backward(self.loss.backward())
        self.optimizer.step()
        dice, _ = dice_and_iou(lung_probability(logits) >= 0.5, masks[:, 0] >= 0.5)
        return value, dice.sum()

    def _end_epoch(self, epoch, totals):
        """Validate, record the history, save last.npz (and best.npz), write the csv and the plots."""
        config = self.config
        metrics, probabilities = evaluate(self.model, self.loss, config.loss, self.val_images, self.val_masks,
                                          config.batch_size, config.device)
        row = {"epoch": epoch + 1, "train_loss": totals["loss"] / totals["images"],
               "train_dice": totals["dice"] / totals["images"], "val_loss": metrics["loss"],
               "val_dice": metrics["dice"], "val_iou": metrics["iou"], "seconds": totals["seconds"]}
        for column in HISTORY_COLUMNS:
            self.history[column].append(float(row[column]))
        improved = metrics["dice"] > self.best_dice
        self.best_dice = max(self.best_dice, metrics["dice"])
        next_generator = epoch_generator(config.seed, epoch + 1)
        if improved:
            self.save("best.npz", epoch + 1, 0, next_generator)
            plot_predictions(self.val_images[:, 0], self.val_masks[:, 0], probabilities, self.path("predictions.png"))
        self.save("last.npz", epoch + 1, 0, next_generator)
        self.write_history()
        plot_curves(self.history, self.path("curves.png"))
        rate = totals["images"] / max(totals["seconds"], 1e-9)
        self.log(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, "
                 f"val loss {row['val_loss']:.4f}, val Dice {row['val_dice']:.4f}, val IoU {row['val_iou']:.4f} "
                 f"({totals['seconds']:.1f} s, {rate:.1f} img/s){' *best*' if improved else ''}")

    def write_history(self):
        """Rewrite ``history.csv`` (atomically) with one row per finished epoch."""
        with atomic_output(self.path("history.csv")) as temporary, open(temporary, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(HISTORY_COLUMNS)
            for values in zip(*(self.history[column] for column in HISTORY_COLUMNS)):
                writer.writerow([int(values[0])] + [f"{value:.6f}" for value in values[1:]])

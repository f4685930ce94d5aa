"""The lung-segmentation training program's parts: config, builders, loop, checkpoints, run folders, plots, inference.
"""
from .checkpoint import read_checkpoint, save_checkpoint
from .config import LOSSES, MODEL_STRIDES, OPTIMIZERS, TrainConfig
from .data import load_examples, split_examples
from .errors import CheckpointError, ConfigError, NonFiniteLoss
from .evaluation import dice_and_iou, evaluate, predict_probabilities
from .inference import evaluate_folder, load_trained_model, predict_files
from .loop import HISTORY_COLUMNS, Trainer, TrainingInterrupted

__all__ = ["TrainConfig", "MODEL_STRIDES", "LOSSES", "OPTIMIZERS", "Trainer", "TrainingInterrupted",
           "HISTORY_COLUMNS", "ConfigError", "CheckpointError", "NonFiniteLoss", "read_checkpoint",
           "save_checkpoint", "load_examples", "split_examples", "dice_and_iou", "evaluate",
           "predict_probabilities", "load_trained_model", "predict_files", "evaluate_folder"]

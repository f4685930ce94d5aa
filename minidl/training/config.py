"""The training run's settings: defaults, validation, and a JSON form stored in every checkpoint."""
import json
from dataclasses import asdict, dataclass, fields

from ..engines import ENGINES, ONLY_REFERENCE
from .errors import ConfigError

LOSSES = ("bce+dice", "bce", "dice", "ce")
OPTIMIZERS = ("adam", "sgd")
# model name -> what H and W must be a multiple of (the number of 2x2 pools, as a power of two)
MODEL_STRIDES = {"segnet_small": 16, "segnet_small_unpool": 16, "segnet": 32, "segnet_basic": 16,
                 "fcn": 32, "fcn32s": 32, "fcn16s": 32, "fcn8s": 32}
# model name -> the smallest --init-features it accepts (FCN's decoder ends at init_features // 2 channels)
MIN_INIT_FEATURES = {"fcn": 2}


def _has_type(value, field):
    """Whether a JSON value suits a ``TrainConfig`` field: its type, an int for a float, None for a None default."""
    if value is None:
        return field.default is None
    if field.type is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, field.type) and (field.type is bool or not isinstance(value, bool))


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults train SegNetSmall on the synthetic set within minutes on a CPU."""
    data: str = None  # a dataset folder, or None for the built-in synthetic set
    synthetic_count: int = 360
    model: str = "segnet_small"
    init_features: int = None  # first width (None: the model's own default; VGG nets scale 1, 2, 4, 8, 8)
    epochs: int = 10
    batch_size: int = 4
    size: int = 128
    lr: float = 2e-3
    lr_decay: float = 0.85  # the learning rate of epoch e is lr * lr_decay**e (so a longer run extends a shorter one)
    optimizer: str = "adam"
    weight_decay: float = 0.0
    loss: str = "bce+dice"
    device: str = "cpu"
    engine: str = None  # "reference" or "fast"; None: the engine minidl runs on (MINIDL_ENGINE, default fast)
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.0
    augment: bool = True

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """The config ``to_json`` wrote; unknown keys are ignored, a value of the wrong type is a ``ValueError``."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object of settings, got {type(values).__name__}")
        known = {field.name: field for field in fields(cls)}
        for key, value in values.items():
            if key in known and not _has_type(value, known[key]):
                raise ValueError(f"setting '{key}' is {value!r}, not of type {known[key].type.__name__}")
        return cls(**{key: value for key, value in values.items() if key in known})

    @property
    def num_classes(self):
        return 2 if self.loss == "ce" else 1

    def validate(self):
        """Raise ``ConfigError`` naming the first bad setting."""
        stride = MODEL_STRIDES.get(self.model)
        least_features = MIN_INIT_FEATURES.get(self.model, 1)
        checks = [
            (stride is not None, f"--model {self.model}: unknown model; choose one of {', '.join(MODEL_STRIDES)}"),
            (self.loss in LOSSES, f"--loss {self.loss}: unknown loss; choose one of {', '.join(LOSSES)}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.size >= 16 and self.size <= 2048, f"--size {self.size}: must be between 16 and 2048"),
            (stride is None or self.size % stride == 0,
             f"--size {self.size}: model {self.model} needs a size that is a multiple of {stride}"),
            (self.lr > 0 and self.lr == self.lr and self.lr != float("inf"),
             f"--lr {self.lr}: the learning rate must be a positive number"),
            (0.0 < self.lr_decay <= 1.0, f"--lr-decay {self.lr_decay}: must be in (0, 1]"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must not be negative"),
            (self.epochs >= 1, f"--epochs {self.epochs}: must be at least 1"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be at least 1"),
            (self.init_features is None or self.init_features >= least_features,
             f"--init-features {self.init_features}: model {self.model} needs at least {least_features}"),
            (self.seed >= 0, f"--seed {self.seed}: must be a non-negative integer"),
            (self.synthetic_count >= 2, f"--synthetic-count {self.synthetic_count}: must be at least 2"),
            (0.0 < self.val_fraction < 1.0, f"--val-fraction {self.val_fraction}: must be between 0 and 1"),
            (0.0 <= self.test_fraction < 1.0, f"--test-fraction {self.test_fraction}: must be in [0, 1)"),
            (self.device in ("cpu", "gpu"), f"--device {self.device}: choose cpu or gpu"),
            (self.engine in (None,) + ENGINES, f"--engine {self.engine}: " + (
                ONLY_REFERENCE if self.engine == "fast" else f"choose {' or '.join(ENGINES)}")),
        ]
        for passed, message in checks:
            if not passed:
                raise ConfigError(message)
        return self

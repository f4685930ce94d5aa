"""Building the model, loss and optimizer a ``TrainConfig`` names, and turning logits into lung probabilities."""
from .. import losses, optim
from ..backend import require_gpu
from ..functional.activation import sigmoid
from .config import MODEL_STRIDES
from .errors import ConfigError


def check_device(device):
    """Raise ``ConfigError`` with the reason when ``device`` is "gpu" and no usable GPU is present."""
    if device == "gpu":
        try:
            require_gpu("train_lung")
        except RuntimeError as error:
            raise ConfigError(str(error)) from None


def build_model(config):
    """The network ``config.model`` with one input channel (the gray radiograph) and ``config.num_classes``.

    ``config.init_features`` (when set) is SegNetSmall's first width, SegNetBasic's width, and the first
    VGG width of SegNet and the FCNs (then ``(f, 2f, 4f, 8f, 8f)``, FCN fc layers ``64 f``).
    A model constructor's ValueError or MemoryError becomes a ``ConfigError`` naming the settings.
    """
    try:
        return _construct_model(config)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"--model {config.model} --init-features {config.init_features}: "
                          f"the model cannot be built ({error})") from None
    except MemoryError:
        raise ConfigError(f"--model {config.model} --init-features {config.init_features}: the model's weights "
                          "do not fit in memory; choose a smaller --init-features") from None


def _construct_model(config):
    """The model ``build_model`` describes, as its constructor makes it (errors unchanged)."""
    import models  # the repository's models package (installed alongside minidl)

    name, features, classes = config.model, config.init_features, config.num_classes
    vgg = {} if features is None else {"widths": (features, 2 * features, 4 * features, 8 * features,
                                                  8 * features)}
    if name in ("segnet_small", "segnet_small_unpool"):
        upsample = "unpool" if name.endswith("unpool") else "bilinear"
        return models.SegNetSmall(1, classes, init_features=features or 16, upsample=upsample)
    if name == "segnet":
        return models.SegNet(1, classes, **vgg)
    if name == "segnet_basic":
        return models.SegNetBasic(1, classes, **({} if features is None else {"width": features}))
    if name == "fcn":
        return models.FCN(1, classes, **vgg)
    skip_nets = {"fcn32s": models.FCN32s, "fcn16s": models.FCN16s, "fcn8s": models.FCN8s}
    if name in skip_nets:
        fc_channels = 4096 if features is None else 64 * features
        return skip_nets[name](1, classes, fc_channels, **vgg)
    raise ConfigError(f"--model {name}: unknown model; choose one of {', '.join(MODEL_STRIDES)}")


def build_loss(name):
    """The loss object for ``--loss``: bce+dice, bce, dice (1-class logits) or ce (2-class logits)."""
    table = {"bce+dice": losses.BCEDiceLoss, "bce": losses.BCEWithLogitsLoss, "dice": losses.DiceLoss,
             "ce": losses.CrossEntropyLoss}
    return table[name]()


def build_optimizer(config, parameters):
    """Adam, or SGD with momentum 0.9, over ``parameters`` with ``config.lr`` and ``config.weight_decay``."""
    if config.optimizer == "adam":
        return optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def loss_target(masks, loss_name, dtype):
    """The loss's target for (N, 1, H, W) 0/1 masks: the same in ``dtype``, or (N, H, W) int64 classes for ce."""
    if loss_name == "ce":
        return masks[:, 0].astype("int64")
    return masks.astype(dtype, copy=False)


def lung_probability(logits):
    """P(lung) per pixel, (N, H, W): sigmoid of 1-class logits, softmax's class 1 for 2-class logits."""
    margin = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
    return sigmoid(margin)

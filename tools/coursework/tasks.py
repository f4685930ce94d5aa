"""The coursework: four assignments of tasks, each task the solution regions of a few functions.

A solution region is the part of a function between the lines ``# BEGIN SOLUTION`` and ``# END SOLUTION``
(markers alone on their lines, at the body's indentation). A student copy replaces each region of a blanked
task with ``raise NotImplementedError("<task>: ...")``; the signature, the docstring and the set-up lines
before the region stay. Functions are named ``file::qualified.name``.
"""
from dataclasses import dataclass

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"


@dataclass(frozen=True)
class Task:
    name: str          # the pytest marker and the grader's row: ``pytest -m conv2d``
    assignment: int
    points: int
    page: str          # the docs page that derives it
    functions: tuple   # "file::qualified.name" of every function holding a region of this task
    summary: str


ASSIGNMENTS = {
    1: "Checking gradients: a gradient checker, ReLU, the sigmoid and binary cross-entropy",
    2: "Convolution: im2col and col2im, conv2d, and its adjoint the transposed convolution",
    3: "Resampling and normalisation: max-pool, max-unpool, bilinear upsampling, batch norm",
    4: "Training: the Dice and cross-entropy losses, SGD and Adam, and SegNetSmall's backward pass",
}

_ACTIVATION = "minidl/functional/activation.py"
_IM2COL = "minidl/functional/im2col.py"
_CONV = "minidl/functional/conv.py"
_POOLING = "minidl/functional/pooling.py"
_UPSAMPLE = "minidl/functional/upsample.py"
_BATCHNORM = "minidl/functional/batchnorm.py"
_SEGNET = "models/segnet_small.py"

TASKS = (
    Task("gradcheck", 1, 15, "docs/gradient_checking.md",
         ("minidl/gradcheck.py::relative_error", "minidl/gradcheck.py::numerical_gradient",
          "minidl/gradcheck.py::check_module"),
         "central differences in vector-Jacobian form and the relative error; graded on a zoo of broken layers"),
    Task("relu", 1, 5, "docs/activations.md",
         (f"{_ACTIVATION}::relu_forward", f"{_ACTIVATION}::relu_backward", f"{_ACTIVATION}::relu_forward_inplace"),
         "ReLU forward (also in place) and backward"),
    Task("sigmoid", 1, 5, "docs/activations.md",
         (f"{_ACTIVATION}::sigmoid", f"{_ACTIVATION}::sigmoid_forward", f"{_ACTIVATION}::sigmoid_backward"),
         "an overflow-free sigmoid, forward and backward"),
    Task("bce", 1, 10, "docs/losses.md",
         ("minidl/functional/bce.py::bce_with_logits_forward", "minidl/functional/bce.py::bce_with_logits_backward"),
         "binary cross-entropy on logits (with pos_weight), forward and backward"),
    Task("im2col", 2, 10, "docs/convolution.md", (f"{_IM2COL}::tap_slices", f"{_IM2COL}::im2col", f"{_IM2COL}::col2im"),
         "every window as a column, and the adjoint that adds columns back"),
    Task("conv2d", 2, 15, "docs/convolution.md",
         (f"{_CONV}::weight_gradient", f"{_CONV}::transposed_correlate", f"{_CONV}::conv2d_forward",
          f"{_CONV}::conv2d_backward"),
         "convolution by im2col and one matrix product; its backward by the transposed convolution"),
    Task("conv_transpose2d", 2, 10, "docs/transposed_convolution.md",
         (f"{_CONV}::conv_transpose2d_forward", f"{_CONV}::conv_transpose2d_backward"),
         "the transposed convolution, whose backward is a convolution"),
    Task("max_pool2d", 3, 10, "docs/pooling.md",
         (f"{_POOLING}::max_pool2d_forward", f"{_POOLING}::max_pool2d_backward"),
         "max-pooling with PyTorch's indices, and its backward routed through the windows"),
    Task("max_unpool2d", 3, 5, "docs/pooling.md",
         (f"{_POOLING}::plane_rows", f"{_POOLING}::max_unpool2d_forward", f"{_POOLING}::max_unpool2d_backward"),
         "max-unpooling with a pool's indices, and its backward gather"),
    Task("upsample_bilinear", 3, 10, "docs/upsampling.md",
         (f"{_UPSAMPLE}::linear_sources", f"{_UPSAMPLE}::upsample_bilinear2d_forward",
          f"{_UPSAMPLE}::upsample_bilinear2d_backward", f"{_UPSAMPLE}::upsample_nearest2d_backward"),
         "bilinear upsampling by interpolation matrices (align_corners both ways), forward and backward; "
         "nearest's backward, the same product"),
    Task("batch_norm", 3, 15, "docs/batchnorm.md",
         (f"{_BATCHNORM}::update_running_statistics", f"{_BATCHNORM}::batch_norm2d_forward",
          f"{_BATCHNORM}::batch_norm2d_backward"),
         "batch normalisation in training and evaluation, with running statistics, forward and backward"),
    Task("dice", 4, 10, "docs/losses.md",
         ("minidl/functional/dice.py::dice_loss_forward", "minidl/functional/dice.py::dice_loss_backward"),
         "the soft Dice loss per plane, forward and backward"),
    Task("cross_entropy", 4, 10, "docs/losses.md",
         ("minidl/functional/cross_entropy.py::cross_entropy_forward",
          "minidl/functional/cross_entropy.py::cross_entropy_backward"),
         "softmax cross-entropy with class weights and ignore_index, forward and backward"),
    Task("sgd", 4, 5, "docs/optimizers.md", ("minidl/optim/sgd.py::sgd_update",),
         "an SGD step with momentum, dampening, Nesterov and weight decay"),
    Task("adam", 4, 10, "docs/optimizers.md", ("minidl/optim/adam.py::adam_update",),
         "an Adam step with bias correction, weight decay and AMSGrad"),
    Task("segnet_backward", 4, 10, "docs/models_backward.md",
         (f"{_SEGNET}::UpsampleConvBlock.backward", f"{_SEGNET}::ConvUnpoolBlock.backward",
          f"{_SEGNET}::SegNetSmall.backward"),
         "SegNetSmall's backward pass, written from its forward in reverse"),
)

TASKS_BY_NAME = {task.name: task for task in TASKS}


def tasks_of_assignment(number):
    """The tasks of assignment ``number``, in order."""
    return [task for task in TASKS if task.assignment == number]


def total_points():
    return sum(task.points for task in TASKS)

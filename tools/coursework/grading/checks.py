"""The held-out checks of every task: ``cases_of(task)`` lists them."""
from . import assignment1, assignment2, assignment3, assignment4, zoo


def cases_of(task_name):
    """The cases of task ``task_name`` (held-out comparisons, or the zoo members for "gradcheck")."""
    return CASES[task_name]()


CASES = {
    "gradcheck": zoo.zoo_cases,
    "relu": assignment1.relu_cases,
    "sigmoid": assignment1.sigmoid_cases,
    "bce": assignment1.bce_cases,
    "im2col": assignment2.im2col_cases,
    "conv2d": assignment2.conv2d_cases,
    "conv_transpose2d": assignment2.conv_transpose2d_cases,
    "max_pool2d": assignment3.max_pool2d_cases,
    "max_unpool2d": assignment3.max_unpool2d_cases,
    "upsample_bilinear": assignment3.upsample_bilinear_cases,
    "batch_norm": assignment3.batch_norm_cases,
    "dice": assignment4.dice_cases,
    "cross_entropy": assignment4.cross_entropy_cases,
    "sgd": assignment4.sgd_cases,
    "adam": assignment4.adam_cases,
    "segnet_backward": assignment4.segnet_backward_cases,
}

"""Adam with bias correction, optional L2 weight decay and AMSGrad (PyTorch's rule, eps added after the sqrt)."""
import math

from ..backend import device_kernels, get_array_module
from .optimizer import Optimizer, zeros_like


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay=0.0,
                max_exp_avg_sq=None):
    """Adam step number ``step`` (1 on the first call), updating every array argument but ``grad`` in place.

    ``max_exp_avg_sq`` (AMSGrad's running maximum of ``exp_avg_sq``) is used when given. Device arrays
    take the same arithmetic fused into one CUDA kernel (``minidl.kernels.adam_update``).
    """
    kernels = device_kernels(param)
    if kernels:
        kernels.adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr / (1 - beta1 ** step), beta1,
                            beta2, eps, weight_decay, math.sqrt(1 - beta2 ** step))
        return
    # BEGIN SOLUTION
    if weight_decay != 0:
        # g = g + weight_decay * p
        grad = grad + weight_decay * param
    # m = beta1 * m + (1 - beta1) * g, written as m + (1 - beta1) * (g - m)
    exp_avg += (1 - beta1) * (grad - exp_avg)
    # v = beta2 * v + (1 - beta2) * g^2
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    second_moment = exp_avg_sq
    if max_exp_avg_sq is not None:
        # v_max = max(v_max, v)
        get_array_module(param).maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    # p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    denominator = get_array_module(param).sqrt(second_moment) / bias_correction2_sqrt + eps
    param -= (lr / bias_correction1) * (exp_avg / denominator)
    # END SOLUTION


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``, as ``torch.optim.Adam``.

    ``weight_decay`` is L2 added to the gradient (Adam, not AdamW). ``params`` as
    for ``SGD``. State per parameter: ``step`` (an int), ``exp_avg``, ``exp_avg_sq``
    and, with AMSGrad, ``max_exp_avg_sq``.
    """

    state_names = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    required_state_names = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        defaults = {"lr": float(lr), "betas": tuple(float(b) for b in betas), "eps": float(eps),
                    "weight_decay": float(weight_decay), "amsgrad": bool(amsgrad)}
        super().__init__(params, defaults)

    def check_hyperparameters(self, group):
        for key in ("lr", "eps", "weight_decay"):
            if not group[key] >= 0:
                raise ValueError(f"Adam: invalid {key} {group[key]!r}: must be >= 0")
        betas = tuple(group["betas"])
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"Adam: invalid betas {betas!r}: need two values in [0, 1)")
        group["betas"] = betas

    def update(self, parameter, state, group):
        if not state:
            state.update(step=0, exp_avg=zeros_like(parameter), exp_avg_sq=zeros_like(parameter))
        if group["amsgrad"] and "max_exp_avg_sq" not in state:  # also after loading a state saved without AMSGrad
            state["max_exp_avg_sq"] = zeros_like(parameter)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        adam_update(parameter.data, parameter.grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                    group["lr"], beta1, beta2, group["eps"], group["weight_decay"], state.get("max_exp_avg_sq"))

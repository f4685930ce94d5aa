"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay (PyTorch's rule)."""
from .optimizer import Optimizer


def sgd_update(param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step on the array ``param`` in place; returns the momentum buffer (None without momentum).

    ``momentum_buffer`` is None before the first step with momentum; it is then
    created as a copy of the gradient and updated in place afterwards.
    """
    # BEGIN SOLUTION
    if weight_decay != 0:
        # g = g + weight_decay * p
        grad = grad + weight_decay * param
    if momentum != 0:
        if momentum_buffer is None:
            # b_1 = g
            momentum_buffer = grad.copy()
        else:
            # b_t = momentum * b_{t-1} + (1 - dampening) * g
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * grad
        # d = g + momentum * b_t (Nesterov) or d = b_t
        grad = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    # p = p - lr * d
    param -= lr * grad
    return momentum_buffer
    # END SOLUTION


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0, weight_decay=0, nesterov=False, dampening=0)``, as ``torch.optim.SGD``.

    ``params``: an iterable of ``minidl.Parameter`` (e.g. ``model.parameters()``)
    or of parameter-group dicts ``{"params": [...], "lr": ...}``. Updates are in
    place, in each parameter's dtype and on its device. ``optimizer.lr`` can be
    changed between steps. State per parameter: ``momentum_buffer`` (with momentum).
    """

    state_names = ("momentum_buffer",)
    required_state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
        defaults = {"lr": float(lr), "momentum": float(momentum), "dampening": float(dampening),
                    "weight_decay": float(weight_decay), "nesterov": bool(nesterov)}
        super().__init__(params, defaults)

    def check_hyperparameters(self, group):
        for key in ("lr", "momentum", "weight_decay"):
            if not group[key] >= 0:
                raise ValueError(f"SGD: invalid {key} {group[key]!r}: must be >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def update(self, parameter, state, group):
        buffer = sgd_update(parameter.data, parameter.grad, state.get("momentum_buffer"), group["lr"],
                            group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"])
        if buffer is not None:
            state["momentum_buffer"] = buffer

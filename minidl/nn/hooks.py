"""Module hooks without autograd: PyTorch's names and semantics on hand-written ``forward`` and ``backward``.

PyTorch fires backward hooks from its autograd graph. minidl has no graph: a model's backward calls each
child's ``backward`` itself. So hooks live where Python looks first, on the instance: a module with hooks
gets ``forward`` and ``backward`` attributes that run the hooks around the class's methods, and a model
that calls ``self.conv.backward(dy)`` reaches them. A module without hooks has no such attributes and
runs exactly the code it ran before (no cost). The wrappers come and go with the hooks.

    pre-hook(module, inputs) -> None or new inputs         before forward
    hook(module, inputs, output) -> None or new output     after forward
    backward pre-hook(module, grad_output) -> None or new grad_output    before backward
    backward hook(module, grad_input, grad_output) -> None or new grad_input   after backward

``inputs`` is the tuple of positional arguments. ``grad_output`` is ``(dy,)`` and ``grad_input`` is
``(dx,)``: a minidl backward returns the gradient of its first input only (MaxUnpool2d's indices and a
pool's indices get none), or a tuple when a module returns several.
"""
import functools
import itertools

HOOK_KINDS = ("forward_pre", "forward", "backward_pre", "backward")
_next_hook_id = itertools.count()


class HookError(RuntimeError):
    """A hook raised, or returned a value of the wrong kind; the message names the module and the hook."""


class RemovableHandle:
    """Returned by every ``register_*_hook``: ``remove()`` takes the hook off again (a second call does nothing)."""

    def __init__(self, module, kind):
        self.module, self.kind, self.id = module, kind, next(_next_hook_id)

    def remove(self):
        self.module._hooks[self.kind].pop(self.id, None)
        refresh_wrappers(self.module)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


def add_hook(module, kind, hook, prepend=False):
    """Register ``hook`` of ``kind`` (one of HOOK_KINDS) on ``module``; returns its handle."""
    if not callable(hook):
        raise TypeError(f"{type(module).__name__}.register_{kind}_hook: hook must be callable, got "
                        f"{type(hook).__name__}")
    handle = RemovableHandle(module, kind)
    hooks = module._hooks[kind]
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    refresh_wrappers(module)
    return handle


def refresh_wrappers(module):
    """Give ``module`` instance-level ``forward`` / ``backward`` wrappers exactly while it has hooks of that side."""
    for method, wrapper, kinds in (("forward", forward_with_hooks, ("forward_pre", "forward")),
                                   ("backward", backward_with_hooks, ("backward_pre", "backward"))):
        if any(module._hooks[kind] for kind in kinds):
            object.__setattr__(module, method, functools.partial(wrapper, module))
        else:
            module.__dict__.pop(method, None)


def describe(module):
    """``Conv2d(1, 16, kernel_size=(3, 3), ...)``: the module's class and settings, for messages."""
    return f"{type(module).__name__}({module.extra_repr()})"


def call_hook(module, kind, hook, *arguments):
    """``hook(module, *arguments)``; an exception from it becomes a HookError naming the module and the hook."""
    try:
        return hook(module, *arguments)
    except HookError:
        raise
    except Exception as error:
        name = getattr(hook, "__qualname__", repr(hook))
        raise HookError(f"{kind} hook {name} registered on {describe(module)} raised "
                        f"{type(error).__name__}: {error}") from error


def as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def replacement(module, kind, hook, result, replaced):
    """A hook's non-None result as the tuple it replaces, the same length; anything else is a HookError."""
    result = tuple(result) if isinstance(result, list) else as_tuple(result)
    if len(result) != len(replaced):
        name = getattr(hook, "__qualname__", repr(hook))
        raise HookError(f"{kind} hook {name} registered on {describe(module)} returned {len(result)} values "
                        f"in place of {len(replaced)}")
    return result


def forward_with_hooks(module, *inputs, **keywords):
    """Pre-hooks (each may replace the inputs), the class's forward, then hooks (each may replace the output)."""
    for hook in list(module._hooks["forward_pre"].values()):
        result = call_hook(module, "forward pre", hook, inputs)
        if result is not None:
            inputs = as_tuple(result)
    output = type(module).forward(module, *inputs, **keywords)
    for hook in list(module._hooks["forward"].values()):
        result = call_hook(module, "forward", hook, inputs, output)
        if result is not None:
            output = result
    return output


def backward_with_hooks(module, dy):
    """Backward pre-hooks (each may replace grad_output), the class's backward, then backward hooks (each may
    replace grad_input). dy and the returned gradient are as the class's backward takes and gives them."""
    grad_output = (dy,)
    for hook in list(module._hooks["backward_pre"].values()):
        result = call_hook(module, "backward pre", hook, grad_output)
        if result is not None:
            grad_output = replacement(module, "backward pre", hook, result, grad_output)
    returned = type(module).backward(module, *grad_output)
    grad_input = as_tuple(returned)
    for hook in list(module._hooks["backward"].values()):
        result = call_hook(module, "full backward", hook, grad_input, grad_output)
        if result is not None:
            grad_input = replacement(module, "full backward", hook, result, grad_input)
    return grad_input if isinstance(returned, tuple) else grad_input[0]

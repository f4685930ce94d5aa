"""``Optimizer``: parameter groups, per-parameter state and a flat, savable state_dict.

``state_dict()`` is a flat dict of numbers and host arrays, so ``minidl.save``
can write it next to a model's state_dict:

    "group.{g}.{name}"        each hyperparameter of parameter group g ("lr", "momentum",
                              ...; a pair such as Adam's betas is a length-2 array)
    "state.{i}.{name}"        per-parameter state of the i-th parameter, counting through the
                              groups in order as PyTorch does ("momentum_buffer"; "step",
                              "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

A parameter has state once a step has updated it. ``load_state_dict``
restores hyperparameters and state exactly, so a resumed run is bit-identical.
"""
import numpy

from ..backend import device_of, get_array_module, to_device, to_numpy
from ..parameter import Parameter


class Optimizer:
    """Base class: subclasses set ``state_names`` (all possible per-parameter state, of which
    ``required_state_names`` are always present once a step has run) and define
    ``check_hyperparameters`` and ``update``."""

    state_names = ()
    required_state_names = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.check_hyperparameters(self.defaults)
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        self.state = {}
        for group in groups:
            self.add_param_group(group)

    def check_hyperparameters(self, group):
        """Raise ValueError for a hyperparameter outside its valid range (as torch.optim)."""
        raise NotImplementedError

    def update(self, parameter, state, group):
        """Update ``parameter.data`` (and ``state``, a dict) in place from ``parameter.grad``."""
        raise NotImplementedError

    def add_param_group(self, group):
        """Add ``{"params": [...], "lr": ..., ...}``; missing hyperparameters take the defaults."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group is a dict with a 'params' entry, got {type(group).__name__}")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"{name}: unknown hyperparameters {unknown}; expected some of {sorted(self.defaults)}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        known = {id(p) for existing in self.param_groups for p in existing["params"]}
        for parameter in params:
            if not isinstance(parameter, Parameter):
                raise TypeError(f"{name}: expected minidl.Parameter objects, got {type(parameter).__name__}")
            if id(parameter) in known:
                raise ValueError(f"{name}: a parameter appears more than once in the parameter groups")
            known.add(id(parameter))
        merged = {**self.defaults, **{key: value for key, value in group.items() if key != "params"}}
        self.check_hyperparameters(merged)
        merged["params"] = params
        self.param_groups.append(merged)

    @property
    def lr(self):
        """The learning rate of the first parameter group (``param_groups[g]["lr"]`` for the others)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        """Set the learning rate of every parameter group, e.g. from a schedule."""
        self.check_hyperparameters({**self.param_groups[0], "lr": value})
        for group in self.param_groups:
            group["lr"] = value

    def indexed_parameters(self):
        """Yield ``(index, parameter, group)``, counting parameters through the groups in order."""
        index = 0
        for group in self.param_groups:
            for parameter in group["params"]:
                yield index, parameter, group
                index += 1

    def step(self):
        """Update every parameter that has a gradient (``has_grad``) from its ``.grad``.

        A parameter that got none since ``zero_grad()`` (a frozen branch, a layer the forward skipped) is
        neither moved nor has its state advanced, as torch.optim skips a ``grad`` of None.
        """
        for index, parameter, group in self.indexed_parameters():
            if parameter.has_grad:
                self.update(parameter, self.state.setdefault(index, {}), group)

    def zero_grad(self):
        for _, parameter, _ in self.indexed_parameters():
            parameter.zero_grad()

    def state_dict(self):
        """A flat dict of numbers and host array copies (see the module docstring)."""
        state = {}
        for g, group in enumerate(self.param_groups):
            for key in self.defaults:
                value = group[key]
                is_pair = isinstance(value, tuple)
                state[f"group.{g}.{key}"] = numpy.array(value, dtype=numpy.float64) if is_pair else value
        for index in sorted(self.state):
            for key, value in self.state[index].items():
                is_array = hasattr(value, "shape")
                state[f"state.{index}.{key}"] = numpy.array(to_numpy(value), copy=True) if is_array else value
        return state

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state from ``state_dict()`` output (or ``minidl.load`` of it).

        Every key is checked (missing, unexpected, mis-shaped, not real numbers) before anything changes.
        """
        name = type(self).__name__
        groups = [self._read_group(state_dict, g) for g in range(len(self.param_groups))]
        parameters = {index: parameter for index, parameter, _ in self.indexed_parameters()}
        group_keys = {f"group.{g}.{key}" for g in range(len(groups)) for key in self.defaults}
        entries = {}
        for key, value in state_dict.items():
            if key in group_keys:
                continue
            parts = key.split(".")
            if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit() or int(parts[1]) not in parameters:
                raise KeyError(f"{name}.load_state_dict: unexpected key '{key}'")
            entries.setdefault(int(parts[1]), {})[parts[2]] = value
        state = {}
        for index, values in sorted(entries.items()):
            parameter = parameters[index]
            if not set(self.required_state_names) <= set(values) <= set(self.state_names):
                raise KeyError(f"{name}.load_state_dict: parameter {index} has state {sorted(values)}; expected "
                               f"{sorted(self.required_state_names)} and optionally the rest of "
                               f"{sorted(self.state_names)}")
            state[index] = {key: self._read_state_value(key, index, value, parameter) for key, value in values.items()}
        for group, loaded in zip(self.param_groups, groups):
            group.update(loaded)
        self.state = state

    def _read_group(self, state_dict, g):
        """The hyperparameters of group g from ``state_dict``, in the types of the defaults."""
        loaded = {}
        for key, default in self.defaults.items():
            full_key = f"group.{g}.{key}"
            if full_key not in state_dict:
                raise KeyError(f"{type(self).__name__}.load_state_dict: missing key '{full_key}'")
            value = numpy.asarray(to_numpy(state_dict[full_key]))
            if isinstance(default, tuple):
                loaded[key] = tuple(float(v) for v in value.reshape(-1))
            else:
                loaded[key] = bool(value) if isinstance(default, bool) else float(value)
        self.check_hyperparameters(loaded)
        return loaded

    def _read_state_value(self, key, index, value, parameter):
        """A number, or an array copied onto the parameter's device in its dtype after a shape check."""
        array = numpy.asarray(to_numpy(value))
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{type(self).__name__}.load_state_dict: 'state.{index}.{key}' has dtype {array.dtype}; "
                            "expected real numbers")
        if array.ndim == 0 and key == "step":
            return int(array)
        if array.shape != tuple(parameter.shape):
            raise ValueError(f"{type(self).__name__}.load_state_dict: 'state.{index}.{key}' has shape "
                             f"{array.shape}, the parameter has shape {tuple(parameter.shape)}")
        return to_device(array, device_of(parameter.data)).astype(parameter.dtype)

    def __repr__(self):
        settings = ", ".join(f"{key}={self.param_groups[0][key]}" for key in self.defaults)
        return f"{type(self).__name__}({settings}, groups={len(self.param_groups)})"


def zeros_like(parameter):
    """A zero array with the parameter's shape, dtype and device."""
    return get_array_module(parameter.data).zeros_like(parameter.data)

"""Gradient checking: hand-written backward passes against float64 central differences.

For a module f with output y and a random upstream gradient g, backward
returns the vector-Jacobian product J^T g. Each of its entries is checked
against the central difference of the scalar s(x) = sum(f(x) * g):

    dL/dx_i ~= (s(x + h e_i) - s(x - h e_i)) / (2h)

in float64 (in float32 the rounding error of s swamps the difference). The
error of a tensor is max_i |a_i - n_i| / max(1e-8, max_i(|a_i| + |n_i|)):
near 1e-10 for a correct backward, near 1 for a wrong one. ``TOLERANCE`` is
the pass mark. ``python -m minidl.gradcheck`` runs the built-in table.
"""
import numpy

from . import backend
from .grad_mode import no_grad
from .nn.module import primary_output

TOLERANCE = 1e-6
STEP = 1e-6


def tie_free(shape, rng, dtype=numpy.float64):
    """A shuffled linspace plus a little jitter: no two entries equal, so max-pooling has no ties to break."""
    size = int(numpy.prod(shape))
    spacing = 6.0 / max(size - 1, 1)
    values = numpy.linspace(-3.0, 3.0, size) + rng.uniform(0, 0.25 * spacing, size)
    return rng.permutation(values).reshape(shape).astype(dtype)


def away_from_zero(shape, rng):
    """Entries with |x| in [0.1, 2]: central differences never straddle ReLU's kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def relative_error(analytic, numeric):
    """max|a - n| / max(1e-8, max(|a| + |n|)), over the whole tensor."""
    analytic, numeric = numpy.asarray(analytic, numpy.float64), numpy.asarray(numeric, numpy.float64)
    # BEGIN SOLUTION
    scale = float(numpy.max(numpy.abs(analytic) + numpy.abs(numeric), initial=0.0))
    return float(numpy.max(numpy.abs(analytic - numeric), initial=0.0)) / max(1e-8, scale)
    # END SOLUTION


def _sample(analytic, max_elements, rng):
    """Flat indices to check: all, or a random sample that always includes the largest analytic entry
    (so the error is measured against the tensor's real scale, not only against small entries)."""
    size = analytic.size
    if max_elements is None or size <= max_elements:
        return numpy.arange(size)
    largest = int(numpy.argmax(numpy.abs(analytic.reshape(-1))))
    others = rng.choice(size, max_elements, replace=False)
    return numpy.unique(numpy.concatenate([[largest], others[others != largest][:max_elements - 1]]))


def numerical_gradient(scalar_function, array, indices, step=STEP):
    """Central differences of ``scalar_function()`` w.r.t. the flat entries ``indices`` of ``array`` (in place)."""
    # BEGIN SOLUTION
    flat = array.reshape(-1)
    gradient = numpy.empty(len(indices))
    for k, index in enumerate(indices):
        original = flat[index]
        flat[index] = original + step
        plus = scalar_function()
        flat[index] = original - step
        minus = scalar_function()
        flat[index] = original
        gradient[k] = (plus - minus) / (2 * step)
    return gradient
    # END SOLUTION


def check_module(module, inputs, wrt=(0,), parameters=True, step=STEP, seed=0, max_elements=None):
    """Check ``module``'s backward: returns ``{tensor name: relative error}``.

    ``inputs`` is an array or a tuple of forward arguments (other arguments,
    such as pooling indices, pass through unchanged); ``wrt`` lists the
    positions of the inputs whose gradient backward returns (a module with
    several returns them as a tuple in that order). The module is cast to
    float64 in place and its gradients are zeroed. The upstream gradient comes
    from a generator spawned from ``seed``, so it never repeats inputs drawn with it. ``max_elements`` checks a
    random sample of that many entries per tensor (for large models).
    Tensors are named ``input`` (``input0``, ``input1``... with several) and
    by their parameter names. Every forward call gets fresh copies of the
    checked inputs, so in-place modules (``ReLU(inplace=True)``) check too.
    """
    rng = numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(1)[0])
    module.double()
    inputs = list(inputs) if isinstance(inputs, tuple) else [inputs]
    for position in wrt:
        inputs[position] = numpy.array(inputs[position], dtype=numpy.float64)

    def forward():
        return primary_output(module(*[numpy.array(value) if k in wrt else value for k, value in enumerate(inputs)]))

    output = forward()
    upstream = rng.standard_normal(output.shape)
    module.zero_grad()
    input_gradients = module.backward(upstream)
    if not isinstance(input_gradients, tuple):
        input_gradients = (input_gradients,)

    # scalar(), the float whose central differences the loop below compares with backward's gradients
    # BEGIN SOLUTION
    def scalar():
        # s(x) = sum(f(x) * g): its gradient is the vector-Jacobian product J^T g that backward returns
        with no_grad():
            return float(numpy.sum(forward() * upstream))
    # END SOLUTION

    tensors = []
    for k, position in enumerate(wrt):
        name = "input" if len(wrt) == 1 else f"input{position}"
        tensors.append((name, inputs[position], input_gradients[k]))
    if parameters:
        tensors += [(name, p.data, p.grad.copy()) for name, p in module.named_parameters()]
    errors = {}
    for name, array, analytic in tensors:
        if analytic is None:
            raise ValueError(f"gradcheck: {type(module).__name__}.backward returned no gradient for '{name}'")
        if tuple(analytic.shape) != tuple(array.shape):
            raise ValueError(f"gradcheck: gradient of '{name}' has shape {tuple(analytic.shape)}, "
                             f"the tensor has shape {tuple(array.shape)}")
        indices = _sample(backend.to_numpy(analytic), max_elements, rng)
        numeric = numerical_gradient(scalar, array, indices, step)
        errors[name] = relative_error(analytic.reshape(-1)[indices], numeric)
    return errors


def check_loss(loss, logits, target, step=STEP, seed=0, max_elements=None):
    """Check a loss object's ``backward()`` against central differences of its value; returns the relative error."""
    rng = numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(1)[0])
    logits = numpy.array(logits, dtype=numpy.float64)

    def scalar():
        value = loss(logits, target)
        return float(numpy.sum(value))

    loss(logits, target)
    analytic = loss.backward()
    indices = _sample(backend.to_numpy(analytic), max_elements, rng)
    numeric = numerical_gradient(scalar, logits, indices, step)
    return relative_error(numpy.asarray(analytic).reshape(-1)[indices], numeric)


if __name__ == "__main__":
    from minidl.gradcheck_cli import main
    raise SystemExit(main())

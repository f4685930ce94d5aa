"""The grader's own measures, independent of the copy's ``minidl.gradcheck``: how far a tensor is from the
expected one, and float64 central differences of a scalar function.

A tensor's error is max|a - e| / max(FLOOR, max(|a| + |e|)) over its entries (NaN and infinite entries
must sit where the expected ones do, with the same values); integer and boolean tensors must be equal.
"""
import numpy

TOLERANCE = {numpy.dtype(numpy.float64): 1e-7, numpy.dtype(numpy.float32): 1e-4}
NUMERIC_TOLERANCE = 1e-5   # central differences against the analytic gradient, float64
STEP = 1e-6
SAMPLES = 12               # entries per tensor checked by central differences (the largest always among them)
FLOOR = 1e-6               # errors of tensors near zero are measured on this absolute scale


def relative_error(actual, expected):
    """max|a - e| / max(FLOOR, max(|a| + |e|)) over the finite entries, as a float."""
    actual, expected = numpy.asarray(actual, numpy.float64), numpy.asarray(expected, numpy.float64)
    finite = numpy.isfinite(actual) & numpy.isfinite(expected)
    actual, expected = actual[finite], expected[finite]
    difference, scale = numpy.abs(actual - expected), numpy.abs(actual) + numpy.abs(expected)
    return float(numpy.max(difference, initial=0.0)) / max(FLOOR, float(numpy.max(scale, initial=0.0)))


def mismatch(actual, expected):
    """Why ``actual`` cannot stand for ``expected`` (shape, dtype, NaN or infinity placement, integer
    values), or None."""
    if actual is None:
        return "is missing"
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    if actual.shape != expected.shape:
        return f"has shape {actual.shape}, expected {expected.shape}"
    if expected.dtype.kind in "biu":
        if actual.dtype.kind not in "biu":
            return f"has dtype {actual.dtype}, expected integers"
        wrong = int(numpy.sum(actual != expected))
        return f"differs in {wrong} of {expected.size} entries" if wrong else None
    if actual.dtype != expected.dtype:
        return f"has dtype {actual.dtype}, expected {expected.dtype}"
    odd = ~numpy.isfinite(expected) | ~numpy.isfinite(actual)
    if numpy.any(odd) and not numpy.array_equal(actual[odd], expected[odd], equal_nan=True):
        return "has NaN or infinite entries where the expected tensor has none (or other ones)"
    return None


def compare(actual, expected, tolerance):
    """(error, problem): the relative error, and a phrase when ``actual`` fails (None when it passes)."""
    problem = mismatch(actual, expected)
    if problem is not None:
        return float("nan"), problem
    if numpy.asarray(expected).dtype.kind in "biu":
        return 0.0, None
    error = relative_error(actual, expected)
    return error, (f"relative error {error:.1e}" if not error <= tolerance else None)


def sampled_indices(analytic, rng, count=SAMPLES):
    """Flat indices to check: all of a small tensor, else ``count`` random ones and the largest |analytic|."""
    flat = numpy.abs(numpy.asarray(analytic, numpy.float64)).reshape(-1)
    if flat.size <= count:
        return numpy.arange(flat.size)
    others = rng.choice(flat.size, count - 1, replace=False)
    return numpy.unique(numpy.append(others, int(numpy.argmax(flat))))


def central_differences(scalar, array, indices, step=STEP):
    """(scalar(x + h e_i) - scalar(x - h e_i)) / 2h for the flat ``indices`` of ``array``, perturbed in place."""
    flat = array.reshape(-1)
    if not numpy.shares_memory(flat, array):
        raise ValueError("central_differences needs a contiguous array to perturb in place")
    numeric = numpy.empty(len(indices))
    for k, index in enumerate(indices):
        original = flat[index]
        flat[index] = original + step
        plus = scalar()
        flat[index] = original - step
        minus = scalar()
        flat[index] = original
        numeric[k] = (plus - minus) / (2 * step)
    return numeric


def gradient_errors(scalar, tensors, seed=0):
    """{name: error of the analytic gradient against central differences of ``scalar``} for ``tensors``,
    triples (name, array perturbed in place, analytic gradient of its shape or None)."""
    rng = numpy.random.default_rng(seed)
    errors = {}
    for name, array, analytic in tensors:
        if analytic is None or numpy.shape(analytic) != array.shape:
            continue  # the comparison with the expected tensors reports it
        indices = sampled_indices(analytic, rng)
        numeric = central_differences(scalar, array, indices)
        picked = numpy.asarray(analytic, numpy.float64).reshape(-1)[indices]
        finite = numpy.all(numpy.isfinite(picked)) and numpy.all(numpy.isfinite(numeric))
        errors[name] = relative_error(picked, numeric) if finite else float("inf")
    return errors

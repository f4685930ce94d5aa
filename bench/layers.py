"""Pooling, unpooling, upsampling, batch norm and a transposed conv (float32): minidl against PyTorch.

    python -m bench.layers            # the issue's shapes (run on a quiet machine)
    python -m bench.layers --quick    # tiny shapes: a smoke test of the script

Cases: MaxPool2d(2) with indices and MaxUnpool2d(2) on (8,16,128,192) (the
unpool input is that pooling's output and indices); Upsample x2 bilinear with
align_corners=True on (8,32,64,96) and (2,64,112,112); BatchNorm2d in
training mode on (2,64,224,224); ConvTranspose2d(128, 64, 3, stride 2,
padding 1, output_padding 1) on (2,128,56,56), FCN's deconv4. "fwd" runs
inside no_grad (batch norm still uses batch statistics and updates its
running ones); "fwd+bwd" also returns the input gradient (and the parameter
gradients of batch norm and the transposed conv). All minidl timings
are taken first, then all PyTorch timings. ``ratio`` is minidl's time over
PyTorch's (lower is better; the target is <= 1.5).
"""

import numpy

from bench.common import import_torch, median_ms, script_main

# (name, input shape, quick input shape)
CASES = [
    ("MaxPool2d(2), indices", (8, 16, 128, 192), (2, 4, 16, 24)),
    ("MaxUnpool2d(2)", (8, 16, 128, 192), (2, 4, 16, 24)),
    ("Upsample x2 bilinear, align_corners", (8, 32, 64, 96), (2, 4, 8, 12)),
    ("Upsample x2 bilinear, align_corners", (2, 64, 112, 112), (1, 8, 14, 14)),
    ("BatchNorm2d, training", (2, 64, 224, 224), (2, 8, 16, 16)),
    ("ConvTranspose2d k3 s2", (2, 128, 56, 56), (1, 8, 7, 7)),
]
DECONV = dict(stride=2, padding=1, output_padding=1)  # FCN's x2 transposed conv


def _array(shape, seed):
    return numpy.random.default_rng(seed).standard_normal(shape, dtype=numpy.float32)


def _pooled(shape):
    """An input of ``shape`` max-pooled by 2: values (N, C, H/2, W/2) and their int64 indices."""
    import minidl
    return minidl.nn.MaxPool2d(2, return_indices=True)(_array(shape, 0))


def minidl_steps(name, shape):
    """(forward, forward_backward) callables for minidl."""
    import minidl
    if name.startswith("MaxUnpool2d"):
        values, indices = _pooled(shape)
        layer = minidl.nn.MaxUnpool2d(2)
        inputs = (values, indices)
    else:
        if name.startswith("MaxPool2d"):
            layer = minidl.nn.MaxPool2d(2, return_indices=True)
        elif name.startswith("Upsample"):
            layer = minidl.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        elif name.startswith("ConvTranspose2d"):
            layer = minidl.nn.ConvTranspose2d(shape[1], shape[1] // 2, 3, **DECONV)
        else:
            layer = minidl.nn.BatchNorm2d(shape[1])
        inputs = (_array(shape, 0),)
    with minidl.no_grad():
        output = layer(*inputs)
    dy = _array((output[0] if isinstance(output, tuple) else output).shape, 1)

    def forward():
        with minidl.no_grad():
            layer(*inputs)

    def forward_backward():
        layer(*inputs)
        layer.backward(dy)
    return forward, forward_backward


def torch_steps(torch, name, shape):
    """(forward, forward_backward) callables for PyTorch; the input gradient is computed too."""
    functional = torch.nn.functional
    if name.startswith("MaxUnpool2d"):
        values, indices = (torch.from_numpy(array) for array in _pooled(shape))

        def apply(x):
            return functional.max_unpool2d(x, indices, 2)
        x = values
    else:
        if name.startswith("MaxPool2d"):
            def apply(x):
                return functional.max_pool2d(x, 2, return_indices=True)[0]
        elif name.startswith("Upsample"):
            apply = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        elif name.startswith("ConvTranspose2d"):
            apply = torch.nn.ConvTranspose2d(shape[1], shape[1] // 2, 3, **DECONV)
        else:
            apply = torch.nn.BatchNorm2d(shape[1])
        x = torch.from_numpy(_array(shape, 0))
    x_leaf = x.clone().requires_grad_(True)
    with torch.no_grad():
        dy = torch.from_numpy(_array(apply(x).shape, 1))

    def forward():
        with torch.no_grad():
            apply(x)

    def forward_backward():
        apply(x_leaf).backward(dy)
    return forward, forward_backward


def run(quick=False):
    """Time every case; returns one row per (case, pass)."""
    cases = [(name, quick_shape if quick else shape) for name, shape, quick_shape in CASES]
    minidl_times = [[median_ms(step, quick=quick) for step in minidl_steps(name, shape)] for name, shape in cases]
    torch = import_torch()
    torch_times = [[median_ms(step, quick=quick) for step in torch_steps(torch, name, shape)] if torch
                   else [float("nan")] * 2 for name, shape in cases]
    rows = []
    for (name, shape), ours, theirs in zip(cases, minidl_times, torch_times):
        shown = str(shape).replace(" ", "")
        if name.startswith("MaxUnpool2d"):
            pooled = shape[:2] + (shape[2] // 2, shape[3] // 2)
            shown = f"{pooled} -> {shape}".replace(" ", "").replace("->", " -> ")
        for index, step in enumerate(("fwd", "fwd+bwd")):
            rows.append({"layer": name, "input": shown, "pass": step,
                         "minidl ms": ours[index], "torch ms": theirs[index], "ratio": ours[index] / theirs[index]})
    return rows


def main(argv=None):
    script_main("layers", run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()

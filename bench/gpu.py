"""GPU benchmark: minidl on CuPy side by side with PyTorch + cuDNN on the same GPU, in one run.

    python bench/gpu.py            # SegNetSmall (N=32, 1x256x256), FCN (N=8, 3x224x224), every conv layer
    python bench/gpu.py --quick    # tiny sizes: checks that the script works

Each figure is the median over the repeats (after warm-up) of CUDA-event
milliseconds: a full training step (zero_grad, forward, loss, backward, Adam
step; the loss value read back to the host on both sides, as a training loop
logging it does) and each conv layer's forward + backward (input gradient
included) at the shape it sees in the model. Both sides run in float32 with
the same weights; PyTorch uses cuDNN with ``cudnn.benchmark`` and, unless
``--tf32``, no TF32 (minidl's cuBLAS GEMMs are plain float32 unless the
environment sets CUPY_TF32=1). Without a GPU the script exits with status 2
and says why; without a CUDA build of PyTorch it reports minidl alone.
"""
import argparse
import os
import statistics
import sys

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minidl  # noqa: E402
import models  # noqa: E402
from minidl import backend, losses, nn, optim  # noqa: E402

REQUIRES_GPU = True  # python -m bench skips this script where no GPU is usable

FULL = {"segnet_small": (32, (1, 256, 256)), "fcn": (8, (3, 224, 224))}
QUICK = {"segnet_small": (2, (1, 32, 32)), "fcn": (1, (3, 32, 32))}


def median_ms(step, new_event, elapsed_ms, repeats, warmup):
    """Median CUDA-event time of ``step()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start, end = new_event(), new_event()
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(elapsed_ms(start, end))
    return statistics.median(times)


class MinidlClock:
    def __init__(self, cupy):
        self.cupy = cupy

    def event(self):
        return self.cupy.cuda.Event()

    def elapsed(self, start, end):
        return self.cupy.cuda.get_elapsed_time(start, end)


class TorchClock:
    def __init__(self, torch):
        self.torch = torch

    def event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def elapsed(self, start, end):
        return start.elapsed_time(end)


# ------------------------------------------------------ PyTorch equivalents of the models
def torch_segnet_small(torch, in_channels, num_classes, f=16):
    """SegNetSmall with bilinear decoders, parameter names as minidl's (enc1.conv.weight, ..., out.weight)."""
    tnn = torch.nn

    class ConvBlock(tnn.Module):
        def __init__(self, cin, cout, upsample=False):
            super().__init__()
            self.up = tnn.Upsample(scale_factor=2, mode="bilinear", align_corners=True) if upsample else None
            self.conv, self.relu = tnn.Conv2d(cin, cout, 3, padding=1), tnn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x if self.up is None else self.up(x)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            widths = (in_channels, f, 2 * f, 4 * f, 8 * f, 16 * f)
            for k in range(5):
                setattr(self, f"enc{k + 1}", ConvBlock(widths[k], widths[k + 1]))
            for k in (4, 3, 2, 1):
                setattr(self, f"dec{k}", ConvBlock(widths[k + 1], widths[k], upsample=True))
            self.pool, self.out = tnn.MaxPool2d(2, 2), tnn.Conv2d(f, num_classes, 3, padding=1)

        def forward(self, x):
            x = self.enc1(x)
            for encoder in (self.enc2, self.enc3, self.enc4, self.enc5):
                x = encoder(self.pool(x))
            for decoder in (self.dec4, self.dec3, self.dec2, self.dec1):
                x = decoder(x)
            return self.out(x)

    return Net()


def torch_fcn(torch, in_channels, num_classes, widths=(64, 128, 256, 512, 512)):
    """FCN (VGG blocks, five deconv -> ReLU -> BN with pool skips, 1x1 classifier), minidl's parameter names."""
    tnn = torch.nn

    class ConvBlock(tnn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv, self.relu = tnn.Conv2d(cin, cout, 3, padding=1), tnn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x))

    class VGGBlock(tnn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.convs, self.pool = tnn.Sequential(ConvBlock(cin, cout), ConvBlock(cout, cout)), tnn.MaxPool2d(2)

        def forward(self, x):
            return self.pool(self.convs(x))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            ins = (in_channels,) + tuple(widths[:-1])
            for k in range(5):
                setattr(self, f"block{k + 1}", VGGBlock(ins[k], widths[k]))
            decoder = (widths[4], widths[3], widths[2], widths[1], widths[0], widths[0] // 2)
            for k in range(5):
                setattr(self, f"deconv{k + 1}", tnn.ConvTranspose2d(decoder[k], decoder[k + 1], 3, stride=2,
                                                                    padding=1, output_padding=1))
                setattr(self, f"relu{k + 1}", tnn.ReLU())
                setattr(self, f"bn{k + 1}", tnn.BatchNorm2d(decoder[k + 1]))
            self.classifier = tnn.Conv2d(widths[0] // 2, num_classes, 1)

        def forward(self, x):
            pools = [x]
            for block in (self.block1, self.block2, self.block3, self.block4, self.block5):
                pools.append(block(pools[-1]))
            x = pools[5]
            for k in range(1, 6):
                x = getattr(self, f"bn{k}")(getattr(self, f"relu{k}")(getattr(self, f"deconv{k}")(x)))
                if k < 5:
                    x = x + pools[5 - k]
            return self.classifier(x)

    return Net()


# ------------------------------------------------------------------ the cases
def model_cases(torch, quick):
    """(name, minidl model, torch model or None, batch, image shape, loss class, random target maker)."""
    sizes = QUICK if quick else FULL
    rng = numpy.random.default_rng(0)
    n, shape = sizes["segnet_small"]
    yield ("SegNetSmall", models.SegNetSmall(1, 1), torch and torch_segnet_small(torch, 1, 1), n, shape,
           losses.BCEWithLogitsLoss, lambda: (rng.uniform(size=(n, 1) + shape[1:]) > 0.5).astype(numpy.float32))
    n, shape = sizes["fcn"]
    yield ("FCN", models.FCN(3, 2), torch and torch_fcn(torch, 3, 2), n, shape,
           losses.CrossEntropyLoss, lambda: rng.integers(0, 2, (n,) + shape[1:]))


def conv_layer_inputs(model, x):
    """[(dotted name, conv layer, input shape)] for every Conv2d / ConvTranspose2d, in call order."""
    names = {id(module): name for name, module in model.named_modules()}
    seen = []

    def observe(module, inputs, output):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            seen.append((names[id(module)], module, tuple(inputs[0].shape)))

    handles = [module.register_forward_hook(observe) for module in model.modules()]
    try:
        with minidl.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def torch_conv_equivalent(torch, layer):
    """The PyTorch layer with minidl ``layer``'s configuration and weights, on the GPU."""
    arguments = dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                     dilation=layer.dilation, bias=layer.bias is not None)
    if isinstance(layer, nn.ConvTranspose2d):
        equivalent = torch.nn.ConvTranspose2d(layer.in_channels, layer.out_channels,
                                        output_padding=layer.output_padding, **arguments)
    else:
        equivalent = torch.nn.Conv2d(layer.in_channels, layer.out_channels, **arguments)
    equivalent.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    return equivalent.cuda()


def run(quick=False, repeats=None, warmup=None, tf32=False):
    """Benchmark rows: dicts with model, what, shape, minidl_ms, torch_ms (None without PyTorch CUDA), ratio."""
    cupy = backend.require_gpu("bench/gpu.py")
    torch = _torch_with_cuda(tf32)
    repeats = repeats or (3 if quick else 20)
    warmup = warmup or (1 if quick else 3)
    minidl_clock = MinidlClock(cupy)
    torch_clock = TorchClock(torch) if torch else None
    minidl.manual_seed(0)
    rows = []
    for name, model, equivalent, n, shape, loss_class, make_target in model_cases(torch, quick):
        rng = numpy.random.default_rng(1)
        x_host = rng.standard_normal((n,) + shape).astype(numpy.float32)
        target_host = make_target()
        if equivalent is not None:
            model.load_state_dict({k: v.detach().numpy() for k, v in equivalent.state_dict().items()})
        model.to("gpu")
        x, target = backend.to_device(x_host, "gpu"), backend.to_device(target_host, "gpu")
        optimizer, loss = optim.Adam(list(model.parameters()), lr=1e-3), loss_class()

        def minidl_step():
            optimizer.zero_grad()
            loss(model(x), target)
            model.backward(loss.backward())
            optimizer.step()

        row = {"model": name, "what": "training step", "shape": (n,) + shape,
               "minidl_ms": median_ms(minidl_step, minidl_clock.event, minidl_clock.elapsed, repeats, warmup)}
        if equivalent is not None:
            row["torch_ms"] = median_ms(_torch_step(torch, equivalent, loss_class, x_host, target_host),
                                        torch_clock.event, torch_clock.elapsed, repeats, warmup)
        rows.append(row)
        for layer_name, layer, input_shape in conv_layer_inputs(model, x):
            rows.append(_conv_row(name, layer_name, layer, input_shape, torch, minidl_clock, torch_clock,
                                  repeats, warmup))
        model.to("cpu")
        x = target = optimizer = None  # the case's device arrays, freed before the next case
        cupy.get_default_memory_pool().free_all_blocks()
    for row in rows:
        row.setdefault("torch_ms", None)
        row["ratio"] = row["minidl_ms"] / row["torch_ms"] if row["torch_ms"] else None
    return rows


def _torch_with_cuda(tf32):
    try:
        import torch
    except ImportError:
        print("bench/gpu.py: PyTorch is not installed: reporting minidl alone", file=sys.stderr)
        return None
    if not torch.cuda.is_available():
        print("bench/gpu.py: this PyTorch has no CUDA device: reporting minidl alone", file=sys.stderr)
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return torch


def _torch_step(torch, equivalent, loss_class, x_host, target_host):
    equivalent = equivalent.cuda().train()
    x = torch.from_numpy(x_host).cuda()
    target = torch.from_numpy(target_host).cuda()
    criterion = torch.nn.BCEWithLogitsLoss() if loss_class is losses.BCEWithLogitsLoss else torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(equivalent.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad()
        value = criterion(equivalent(x), target)
        value.backward()
        optimizer.step()
        value.item()
    return step


def _conv_row(model_name, layer_name, layer, input_shape, torch, minidl_clock, torch_clock, repeats, warmup):
    rng = numpy.random.default_rng(2)
    x_host = rng.standard_normal(input_shape).astype(numpy.float32)
    x = backend.to_device(x_host, "gpu")
    dy = backend.to_device(rng.standard_normal(layer(x).shape).astype(numpy.float32), "gpu")
    layer.backward(dy)

    def minidl_step():
        layer(x)
        layer.backward(dy)

    row = {"model": model_name, "what": f"{layer_name} ({type(layer).__name__})", "shape": input_shape,
           "minidl_ms": median_ms(minidl_step, minidl_clock.event, minidl_clock.elapsed, repeats, warmup)}
    if torch is not None:
        equivalent = torch_conv_equivalent(torch, layer)
        tx = torch.from_numpy(x_host).cuda().requires_grad_(True)
        tdy = torch.as_tensor(backend.to_numpy(dy)).cuda()

        def torch_step():
            equivalent(tx).backward(tdy)
        row["torch_ms"] = median_ms(torch_step, torch_clock.event, torch_clock.elapsed, repeats, warmup)
    return row


def format_rows(rows):
    """A Markdown table of the rows."""
    lines = ["| model | what | input shape | minidl ms | PyTorch ms | minidl / PyTorch |", "|---|---|---|---|---|---|"]
    for row in rows:
        torch_ms = "-" if row["torch_ms"] is None else f"{row['torch_ms']:.3f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(f"| {row['model']} | {row['what']} | {row['shape']} | {row['minidl_ms']:.3f} | {torch_ms} "
                     f"| {ratio} |")
    return "\n".join(lines)


def device_description(cupy):
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (default 20, quick 3)")
    parser.add_argument("--tf32", action="store_true", help="let PyTorch use TF32 tensor cores")
    args = parser.parse_args(argv)
    try:
        cupy = backend.require_gpu("bench/gpu.py")
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 2
    rows = run(quick=args.quick, repeats=args.repeats, tf32=args.tf32)
    print(f"GPU: {device_description(cupy)}; minidl {minidl.__version__}, CuPy {cupy.__version__}; float32; "
          f"PyTorch TF32 {'on' if args.tf32 else 'off'}; median of {args.repeats or (3 if args.quick else 20)} "
          f"CUDA-event timings")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

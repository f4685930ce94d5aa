"""The GPU path: every layer, loss, optimizer and model on CuPy equals the CPU path.

Run on a machine with a CUDA GPU and CuPy (``pip install -e ".[gpu]"``):
    python -m pytest -m gpu -q
Everything here is skipped cleanly where there is no GPU; set
``MINIDL_REQUIRE_GPU=1`` (as on a GPU CI runner) to make a missing CuPy or GPU
a failure with the reason instead of a skip. Outputs and
gradients must match the host within a relative error (max |gpu - cpu| /
max |cpu|) of 1e-10 in float64 and 1e-4 in float32; the CUDA kernels, which
copy, compare and add in the host loop's order, must match it exactly.
"""
import itertools

import numpy
import pytest

import minidl
import models
from helpers import gpu_or_skip, relative_difference, tie_free
from minidl import backend, kernels, losses, metrics, nn, optim
from minidl.fast import im2col as host_windows
from minidl.fast import pooling as host_pooling

pytestmark = pytest.mark.gpu

TOLERANCE = {numpy.dtype(numpy.float32): 1e-4, numpy.dtype(numpy.float64): 1e-10}
DTYPES = (numpy.float32, numpy.float64)


@pytest.fixture(autouse=True)
def cupy():
    return gpu_or_skip()


def to_gpu(x):
    return backend.to_device(x, "gpu")


def assert_matches(gpu_value, cpu_value, name, floor=0.0):
    """A device array of the host value's dtype, equal to it within the dtype's tolerance."""
    assert backend.is_gpu_array(gpu_value), f"{name}: expected a device array, got {type(gpu_value).__name__}"
    assert gpu_value.dtype == cpu_value.dtype, f"{name}: dtype {gpu_value.dtype} != {cpu_value.dtype}"
    tolerance = TOLERANCE[cpu_value.dtype]
    error = relative_difference(gpu_value, cpu_value, floor)
    assert error <= tolerance, f"{name}: GPU differs from CPU by {error:.2e} (relative) > {tolerance:.0e}"


def assert_identical(gpu_value, cpu_value, name):
    assert backend.is_gpu_array(gpu_value) and gpu_value.dtype == cpu_value.dtype, name
    numpy.testing.assert_array_equal(backend.to_numpy(gpu_value), cpu_value, err_msg=name)


def twin_modules(make, dtype, state_edit=None):
    """The same module twice, equal weights and buffers: one on the host, one on the GPU, in ``dtype``."""
    cpu_module = make().to(dtype=dtype)
    state = cpu_module.state_dict()
    if state_edit is not None:
        state = state_edit(state)
        cpu_module.load_state_dict(state)
    gpu_module = make().to(dtype=dtype)
    gpu_module.load_state_dict(state)
    gpu_module.train(cpu_module.training)
    return cpu_module, gpu_module.to("gpu")


def assert_module_state_matches(gpu_module, cpu_module, context):
    """Parameters, gradients and buffers equal on both devices.

    A gradient that is zero in exact arithmetic (a conv bias followed by
    batch norm) is rounding noise on both devices, so each gradient's error is
    measured against at least 1e-2 of the model's largest gradient entry.
    """
    largest_gradient = max((float(numpy.max(numpy.abs(p.grad))) for p in cpu_module.parameters()), default=0.0)
    for (name, gpu_parameter), (_, cpu_parameter) in zip(gpu_module.named_parameters(),
                                                         cpu_module.named_parameters()):
        assert_matches(gpu_parameter.data, cpu_parameter.data, f"{context}: {name}")
        assert_matches(gpu_parameter.grad, cpu_parameter.grad, f"{context}: {name}.grad", 1e-2 * largest_gradient)
    for (name, gpu_buffer), (_, cpu_buffer) in zip(gpu_module.named_buffers(), cpu_module.named_buffers()):
        assert backend.is_gpu_array(gpu_buffer), f"{context}: buffer {name} left the GPU"
        if cpu_buffer.dtype.kind == "f":
            assert_matches(gpu_buffer, cpu_buffer, f"{context}: buffer {name}")
        else:
            assert_identical(gpu_buffer, cpu_buffer, f"{context}: buffer {name}")


def random_running_statistics(state):
    rng = numpy.random.default_rng(7)
    for key in state:
        if key.endswith("running_mean"):
            state[key] = rng.standard_normal(state[key].shape).astype(state[key].dtype)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, state[key].shape).astype(state[key].dtype)
    return state


# ------------------------------------------------------------------ layers
LAYERS = {
    "conv": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 8)),
    "conv_dilated_no_bias": (lambda: nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(2, 1), dilation=2,
                                               bias=False), (2, 2, 9, 10)),
    "conv_1x1": (lambda: nn.Conv2d(4, 2, 1), (3, 4, 5, 5)),
    "conv_transpose": (lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), (2, 3, 5, 4)),
    "conv_transpose_dilated": (lambda: nn.ConvTranspose2d(2, 3, (2, 3), stride=(2, 1), padding=(0, 1),
                                                          dilation=(1, 2), bias=False), (2, 2, 4, 5)),
    "relu": (lambda: nn.ReLU(), (2, 3, 4, 5)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 7)),
    "max_pool": (lambda: nn.MaxPool2d(2), (2, 3, 8, 6)),
    "max_pool_overlapping_padded": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 2, 9, 7)),
    "max_pool_dilated": (lambda: nn.MaxPool2d(2, stride=1, dilation=2), (1, 2, 7, 6)),
    "max_pool_ceil_mode": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 8, 7)),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    "upsample_nearest_size": (lambda: nn.Upsample(size=(7, 9)), (2, 3, 4, 5)),
    "upsample_bilinear_aligned": (lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                  (2, 3, 4, 5)),
    "upsample_bilinear_size": (lambda: nn.Upsample(size=(7, 6), mode="bilinear", align_corners=False),
                               (2, 3, 4, 5)),
    "batch_norm_train": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 4)),
    "batch_norm_cumulative": (lambda: nn.BatchNorm2d(3, momentum=None, affine=False), (4, 3, 5, 4)),
    "batch_norm_eval": (lambda: nn.BatchNorm2d(3).eval(), (4, 3, 5, 4)),
    "sequential": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
                   (2, 2, 6, 6)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_cpu(name, dtype, rng):
    make, shape = LAYERS[name]
    cpu_module, gpu_module = twin_modules(make, dtype, random_running_statistics)
    x = tie_free(shape, rng, dtype)
    y = cpu_module(x)
    y_gpu = gpu_module(to_gpu(x))
    assert_matches(y_gpu, y, f"{name} output")
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert_matches(gpu_module.backward(to_gpu(dy)), cpu_module.backward(dy), f"{name} input gradient")
    assert_module_state_matches(gpu_module, cpu_module, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_sizes", [((2, 3, 8, 6), (None, (8, 6))),
                                                 ((2, 3, 9, 7), ((9, 7), (2, 3, 9, 7)))])
def test_max_pool_indices_and_unpool_match_cpu(shape, output_sizes, dtype, rng):
    x = tie_free(shape, rng, dtype)
    pool_cpu, pool_gpu = nn.MaxPool2d(2, return_indices=True), nn.MaxPool2d(2, return_indices=True)
    y, indices = pool_cpu(x)
    y_gpu, indices_gpu = pool_gpu(to_gpu(x))
    assert_identical(y_gpu, y, "pooled values")
    assert_identical(indices_gpu, indices, "pooling indices")
    unpool_cpu, unpool_gpu = nn.MaxUnpool2d(2), nn.MaxUnpool2d(2)
    for output_size in output_sizes:
        z = unpool_cpu(y, indices, output_size)
        z_gpu = unpool_gpu(y_gpu, indices_gpu, output_size)
        assert_identical(z_gpu, z, f"unpooled, output_size={output_size}")
        dz = rng.standard_normal(z.shape).astype(dtype)
        assert_identical(unpool_gpu.backward(to_gpu(dz)), unpool_cpu.backward(dz), "unpool gradient")


# ------------------------------------------------------------------ losses
def _binary_target(rng, shape):
    return (rng.uniform(size=shape) > 0.5).astype(numpy.float64)


LOSSES = {
    "bce_mean": (lambda: losses.BCEWithLogitsLoss(), _binary_target),
    "bce_sum_pos_weight": (lambda: losses.BCEWithLogitsLoss(reduction="sum",
                                                            pos_weight=numpy.array([2.0, 0.5, 1.5]).reshape(3, 1, 1)),
                           _binary_target),
    "bce_none": (lambda: losses.BCEWithLogitsLoss(reduction="none"), _binary_target),
    "dice_logits": (lambda: losses.DiceLoss(), _binary_target),
    "dice_probabilities_sum": (lambda: losses.DiceLoss(from_logits=False, reduction="sum"), _binary_target),
    "bce_dice": (lambda: losses.BCEDiceLoss(), _binary_target),
    "cross_entropy": (lambda: losses.CrossEntropyLoss(), None),
    "cross_entropy_weighted_sum": (lambda: losses.CrossEntropyLoss(weight=numpy.array([0.2, 1.0, 3.0]),
                                                                   reduction="sum"), None),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_matches_cpu(name, dtype, rng):
    make, make_target = LOSSES[name]
    shape = (2, 3, 4, 5)
    logits = rng.standard_normal(shape).astype(dtype)
    if name.startswith("dice_probabilities"):
        logits = rng.uniform(0.05, 0.95, shape).astype(dtype)
    target = rng.integers(0, 3, (2, 4, 5)) if make_target is None else make_target(rng, shape).astype(dtype)
    cpu_loss, gpu_loss = make(), make()
    value = cpu_loss(logits, target)
    value_gpu = gpu_loss(to_gpu(logits), to_gpu(target))
    if isinstance(value, float):
        assert isinstance(value_gpu, float), f"{name}: value should be a Python float, got {type(value_gpu)}"
        assert abs(value_gpu - value) <= TOLERANCE[numpy.dtype(dtype)] * max(abs(value), 1e-30)
    else:
        assert_matches(value_gpu, value, f"{name} value")
    assert_matches(gpu_loss.backward(), cpu_loss.backward(), f"{name} gradient")


def test_loss_rejects_target_on_other_device(rng):
    logits = to_gpu(rng.standard_normal((2, 1, 4, 4)))
    with pytest.raises(RuntimeError, match="(?s)(cpu.*gpu|gpu.*cpu)"):
        losses.BCEWithLogitsLoss()(logits, _binary_target(rng, (2, 1, 4, 4)))


# -------------------------------------------------------------- optimizers
OPTIMIZERS = {
    "sgd": lambda params: optim.SGD(params, lr=0.1),
    "sgd_momentum_nesterov_decay": lambda params: optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True,
                                                            weight_decay=1e-2),
    "adam": lambda params: optim.Adam(params, lr=1e-2),
    "adam_decay": lambda params: optim.Adam(params, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2),
    "adam_amsgrad": lambda params: optim.Adam(params, lr=1e-2, weight_decay=1e-3, amsgrad=True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_cpu(name, dtype, rng):
    values = [rng.standard_normal(shape).astype(dtype) for shape in ((3, 4), (5,))]
    cpu_params = [minidl.Parameter(v.copy()) for v in values]
    gpu_params = [minidl.Parameter(to_gpu(v)) for v in values]
    cpu_optimizer, gpu_optimizer = OPTIMIZERS[name](cpu_params), OPTIMIZERS[name](gpu_params)
    for _ in range(3):
        for cpu_parameter, gpu_parameter in zip(cpu_params, gpu_params):
            gradient = rng.standard_normal(cpu_parameter.shape).astype(dtype)
            cpu_parameter.grad[...] = gradient
            gpu_parameter.grad[...] = to_gpu(gradient)
        cpu_optimizer.step()
        gpu_optimizer.step()
    for k, (cpu_parameter, gpu_parameter) in enumerate(zip(cpu_params, gpu_params)):
        assert_matches(gpu_parameter.data, cpu_parameter.data, f"{name} parameter {k}")
    cpu_state, gpu_state = cpu_optimizer.state_dict(), gpu_optimizer.state_dict()
    assert sorted(gpu_state) == sorted(cpu_state)
    for key, value in gpu_state.items():
        assert not backend.is_gpu_array(value), f"{name}: state_dict entry {key} is a device array"
        if isinstance(value, numpy.ndarray) and value.dtype.kind == "f":
            assert relative_difference(value, cpu_state[key]) <= TOLERANCE[numpy.dtype(dtype)], key


# ------------------------------------------------------------------ models
MODELS = {
    "segnet_small_bilinear": (lambda: models.SegNetSmall(1, 1, init_features=4), (2, 1, 32, 32)),
    "segnet_small_unpool": (lambda: models.SegNetSmall(1, 2, init_features=4, upsample="unpool"), (2, 1, 32, 32)),
    "segnet": (lambda: models.SegNet(1, 2, widths=(4, 4, 8, 8, 8), depths=(2, 2, 3, 3, 3)), (2, 1, 32, 32)),
    "segnet_basic": (lambda: models.SegNetBasic(1, 2, width=4), (2, 1, 32, 32)),
    "fcn": (lambda: models.FCN(3, 2, widths=(4, 4, 8, 8, 8)), (2, 3, 32, 32)),
    "fcn32s": (lambda: models.FCN32s(3, 3, fc_channels=16, widths=(4, 4, 8, 8, 8)), (1, 3, 32, 32)),
    "fcn16s": (lambda: models.FCN16s(3, 3, fc_channels=16, widths=(4, 4, 8, 8, 8)), (1, 3, 32, 32)),
    "fcn8s": (lambda: models.FCN8s(3, 3, fc_channels=16, widths=(4, 4, 8, 8, 8)), (1, 3, 32, 32)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_cpu(name, dtype, rng):
    make, shape = MODELS[name]
    cpu_model, gpu_model = twin_modules(make, dtype)
    x = rng.standard_normal(shape).astype(dtype)
    logits = cpu_model(x)
    assert_matches(gpu_model(to_gpu(x)), logits, f"{name} logits")
    dlogits = rng.standard_normal(logits.shape).astype(dtype)
    assert_matches(gpu_model.backward(to_gpu(dlogits)), cpu_model.backward(dlogits), f"{name} input gradient")
    assert_module_state_matches(gpu_model, cpu_model, name)


TRAINING = {
    "segnet_small": (lambda: models.SegNetSmall(1, 1, init_features=4), (2, 1, 32, 32),
                     lambda params: optim.Adam(params, lr=1e-3), losses.BCEWithLogitsLoss),
    "fcn": (lambda: models.FCN(3, 2, widths=(4, 4, 8, 8, 8)), (2, 3, 32, 32),
            lambda params: optim.SGD(params, lr=0.05, momentum=0.9), losses.CrossEntropyLoss),
}


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_training_steps_match_cpu(name, rng):
    """Three float64 steps of forward, loss, backward and update: same losses and weights on both devices."""
    train_on_both_devices(name, rng)


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_a_student_copy_trains_on_the_gpu_without_kernels(name, rng, monkeypatch):
    """A student copy has no minidl/kernels.py and only the reference engine: its ops run on CuPy through
    ``xp`` alone (no kernel compiled) and train as on the host."""
    def refuse(*arguments):
        raise AssertionError(f"a CUDA kernel was compiled for {arguments}")

    monkeypatch.setattr(backend, "HAS_KERNELS", False)
    monkeypatch.setattr(kernels, "compiled_function", refuse)
    with minidl.engine("reference"):
        train_on_both_devices(name, rng)


def train_on_both_devices(name, rng):
    """Three steps of TRAINING[name] on twin models on the host and the GPU; the losses and weights agree."""
    make, shape, make_optimizer, make_loss = TRAINING[name]
    cpu_model, gpu_model = twin_modules(make, numpy.float64)
    cpu_optimizer = make_optimizer(list(cpu_model.parameters()))
    gpu_optimizer = make_optimizer(list(gpu_model.parameters()))
    loss_cpu, loss_gpu = make_loss(), make_loss()
    for step in range(3):
        x = rng.standard_normal(shape)
        if make_loss is losses.CrossEntropyLoss:
            target = rng.integers(0, 2, (shape[0],) + shape[2:])
        else:
            target = _binary_target(rng, (shape[0], 1) + shape[2:])
        for model, optimizer, loss, device in ((cpu_model, cpu_optimizer, loss_cpu, "cpu"),
                                               (gpu_model, gpu_optimizer, loss_gpu, "gpu")):
            optimizer.zero_grad()
            value = loss(model(backend.to_device(x, device)), backend.to_device(target, device))
            model.backward(loss.backward())
            optimizer.step()
            if device == "cpu":
                cpu_value = value
            else:
                assert abs(value - cpu_value) <= 1e-10 * abs(cpu_value), f"{name} step {step}: loss"
    assert_module_state_matches(gpu_model, cpu_model, f"{name} after 3 steps")


READ_COUNTED_STEPS = {
    "segnet_small bce+dice": (lambda: models.SegNetSmall(1, 1, init_features=4), losses.BCEDiceLoss, 1),
    "segnet_small_unpool ce": (lambda: models.SegNetSmall(1, 2, init_features=4, upsample="unpool"),
                               losses.CrossEntropyLoss, 2),
    "segnet ce": (lambda: models.SegNet(1, 2, widths=(4, 4, 8, 8, 8), depths=(2, 2, 3, 3, 3)),
                  losses.CrossEntropyLoss, 2),
}


@pytest.mark.parametrize("name", sorted(READ_COUNTED_STEPS))
def test_a_training_step_reads_the_device_once(name, cupy, rng):
    """The loss value is the one device-to-host read of a step: target and index checks ride along with it."""
    if not hasattr(cupy, "host_reads"):
        pytest.skip("only the emulated CuPy counts device-to-host reads")
    build, loss_class, classes = READ_COUNTED_STEPS[name]
    model, loss = build().to("gpu"), loss_class()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    x = to_gpu(rng.standard_normal((2, 1, 32, 32)).astype(numpy.float32))
    target = rng.integers(0, 2, (2, 32, 32)) if classes == 2 else (rng.random((2, 1, 32, 32)) > 0.5)
    target = to_gpu(target.astype(numpy.int64 if classes == 2 else numpy.float32))
    for step in range(2):  # the first step compiles kernels and builds the optimizer's state
        reads_before = cupy.host_reads
        optimizer.zero_grad()
        value = loss(model(x), target)
        model.backward(loss.backward())
        optimizer.step()
    assert isinstance(value, float) and cupy.host_reads - reads_before == 1


def test_checkpoint_moves_between_devices(tmp_path, rng):
    """Model and Adam state saved on the GPU resume on the CPU, and the reverse, continuing the same run."""
    make = MODELS["segnet_small_unpool"][0]
    x = rng.standard_normal((2, 1, 32, 32))
    target = _binary_target(rng, (2, 2, 32, 32))

    def new_run(device):
        model = make().double().to(device)
        return model, optim.Adam(list(model.parameters()), lr=1e-2)

    def train_step(model, optimizer, device):
        loss = losses.BCEWithLogitsLoss()
        optimizer.zero_grad()
        loss(model(backend.to_device(x, device)), backend.to_device(target, device))
        model.backward(loss.backward())
        optimizer.step()

    def save(model, optimizer, name):
        minidl.save(tmp_path / f"{name}.model.npz", model.state_dict())
        minidl.save(tmp_path / f"{name}.optimizer.npz", optimizer.state_dict())

    def resume(name, device):
        model, optimizer = new_run(device)
        model.load_state_dict(minidl.load(tmp_path / f"{name}.model.npz"))
        optimizer.load_state_dict(minidl.load(tmp_path / f"{name}.optimizer.npz"))
        return model, optimizer

    gpu_model, gpu_optimizer = new_run("gpu")
    train_step(gpu_model, gpu_optimizer, "gpu")
    save(gpu_model, gpu_optimizer, "from_gpu")
    cpu_model, cpu_optimizer = resume("from_gpu", "cpu")
    train_step(gpu_model, gpu_optimizer, "gpu")
    train_step(cpu_model, cpu_optimizer, "cpu")
    assert_module_state_matches(gpu_model, cpu_model, "GPU checkpoint resumed on the CPU")
    save(cpu_model, cpu_optimizer, "from_cpu")
    resumed_model, resumed_optimizer = resume("from_cpu", "gpu")
    train_step(resumed_model, resumed_optimizer, "gpu")
    train_step(cpu_model, cpu_optimizer, "cpu")
    assert_module_state_matches(resumed_model, cpu_model, "CPU checkpoint resumed on the GPU")


def test_augmentation_on_the_gpu_matches_the_host(rng):
    from minidl.data import apply_augmentation, draw_augmentation
    images = rng.random((3, 1, 40, 36)).astype(numpy.float32)
    masks = (rng.random((3, 1, 40, 36)) > 0.5).astype(numpy.float32)
    params = draw_augmentation(numpy.random.default_rng(5), 3)
    host_images, host_masks = apply_augmentation(images, masks, params)
    gpu_images, gpu_masks = apply_augmentation(to_gpu(images), to_gpu(masks), params)
    assert_matches(gpu_images, host_images, "augmented images")
    # nearest-neighbour masks: a source coordinate within rounding of a half pixel may round either way
    assert backend.is_gpu_array(gpu_masks) and gpu_masks.dtype == host_masks.dtype
    assert numpy.mean(backend.to_numpy(gpu_masks) != host_masks) < 1e-3


def test_metrics_and_summary_on_the_gpu(rng, capsys):
    probabilities = rng.uniform(size=(3, 1, 6, 5))
    target = (rng.uniform(size=(3, 1, 6, 5)) > 0.5).astype(numpy.float32)
    for name in ("dice_per_image", "iou_per_image", "pixel_accuracy_per_image"):
        function = getattr(metrics, name)
        assert_matches(function(to_gpu(probabilities), to_gpu(target)), function(probabilities, target), name)
    for name in ("dice_score", "iou_score", "pixel_accuracy"):
        function = getattr(metrics, name)
        assert function(to_gpu(probabilities), to_gpu(target)) == pytest.approx(function(probabilities, target))
    model = MODELS["segnet_small_unpool"][0]()
    expected = minidl.summary(model, (1, 32, 32))
    host_table = capsys.readouterr().out
    assert minidl.summary(model.to("gpu"), (1, 32, 32)) == expected
    assert capsys.readouterr().out == host_table


# -------------------------------------------------------- device mismatch
PARAMETRISED = {
    "Conv2d": lambda: nn.Conv2d(2, 2, 3, padding=1),
    "ConvTranspose2d": lambda: nn.ConvTranspose2d(2, 2, 3, padding=1),
    "BatchNorm2d": lambda: nn.BatchNorm2d(2),
}


@pytest.mark.parametrize("name", sorted(PARAMETRISED))
def test_input_on_the_other_device_is_a_clear_error(name, rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(numpy.float32)
    with pytest.raises(RuntimeError, match=f"(?s){name}.*cpu.*gpu"):
        PARAMETRISED[name]().to("gpu")(x)
    with pytest.raises(RuntimeError, match=f"(?s){name}.*gpu.*cpu"):
        PARAMETRISED[name]()(to_gpu(x))


# ----------------------------------------------------------------- kernels
WINDOW_GEOMETRIES = list(itertools.product(
    [(5, 7), (8, 8), (1, 4)], [(1, 1), (3, 3), (2, 3)], [(1, 1), (2, 2), (3, 1)], [(0, 0), (1, 2)],
    [(1, 1), (2, 1)]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im_kernels_equal_host_loops(dtype, rng):
    checked = 0
    for (h, w), kernel, stride, padding, dilation in WINDOW_GEOMETRIES:
        grid = host_windows.output_grid((h, w), kernel, stride, padding, dilation)
        if min(grid) < 1:
            continue
        x = rng.standard_normal((2, 3, h, w)).astype(dtype)
        for pad_value in (0.0, -numpy.inf):
            cols = host_windows.im2col(x, kernel, stride, padding, dilation, pad_value)
            assert_identical(kernels.im2col(to_gpu(x), kernel, stride, padding, dilation, pad_value), cols,
                             f"im2col {h, w, kernel, stride, padding, dilation}")
        cols = rng.standard_normal(cols.shape).astype(dtype)
        assert_identical(kernels.col2im(to_gpu(cols), x.shape, stride, padding, dilation),
                         host_windows.col2im(cols, x.shape, stride, padding, dilation),
                         f"col2im {h, w, kernel, stride, padding, dilation}")
        checked += 1
    assert checked > 80


def test_col2im_kernel_adds_into_a_given_array(cupy, rng):
    geometry = ((3, 3), (2, 1), (1, 1), (1, 1))
    x_shape = (2, 3, 7, 6)
    cols = rng.standard_normal(host_windows.im2col(numpy.zeros(x_shape), *geometry).shape)
    start = rng.standard_normal(x_shape)
    out = to_gpu(start)
    assert kernels.col2im(to_gpu(cols), x_shape, *geometry[1:], out=out) is out
    # the kernel adds a pixel's column sum to it, the host loop one offset at a time: equal up to rounding
    assert_matches(out, host_windows.col2im(cols, x_shape, *geometry[1:], out=start.copy()), "col2im into out")
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.col2im(to_gpu(cols), x_shape, *geometry[1:], out=cupy.zeros((2, 3, 6, 7)).transpose(0, 1, 3, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_unpooling_a_repeated_index_keeps_the_last_value_as_the_host(dtype, rng):
    """Overlapping pools can name one cell twice in a plane: the last position in scan order wins, on both."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    indices = rng.integers(0, 6, size=x.shape)          # 20 positions onto 6 cells: many repeats
    expected = host_pooling.max_unpool2d_forward(x, indices, (2, 3))[0]
    planes = expected.reshape(6, 6)
    for plane, (values, targets) in enumerate(zip(x.reshape(6, 20), indices.reshape(6, 20))):
        last = {target: value for target, value in zip(targets, values)}
        assert all(planes[plane, target] == value for target, value in last.items())
    for _ in range(3):
        assert_identical(kernels.max_unpool_forward(to_gpu(x), to_gpu(indices), (2, 3)), expected, "unpool")


@pytest.mark.parametrize("layer", ["conv", "transposed"])
def test_an_empty_batch_passes_through_conv_layers(layer, cupy):
    module = (nn.Conv2d(3, 4, 3, padding=1) if layer == "conv" else nn.ConvTranspose2d(3, 4, 3, stride=2)).to("gpu")
    y = module(cupy.zeros((0, 3, 6, 5), dtype=numpy.float32))
    assert backend.is_gpu_array(y) and y.shape[:2] == (0, 4)
    module.zero_grad()
    dx = module.backward(cupy.zeros(y.shape, dtype=numpy.float32))
    assert dx.shape == (0, 3, 6, 5) and float(abs(module.weight.grad).max()) == 0.0


def test_im2col_kernel_fills_given_buffers_and_a_smaller_grid(cupy, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(numpy.float32)
    geometry = ((3, 2), (2, 1), (1, 0), (1, 2))
    expected = host_windows.im2col(x, *geometry, grid=(2, 3))
    contiguous = cupy.empty(expected.shape, dtype=numpy.float32)
    strided = cupy.zeros(expected.shape[:5] + (2 * expected.shape[5],), dtype=numpy.float32)[..., ::2]
    for buffer in (contiguous, strided):
        assert kernels.im2col(to_gpu(x), *geometry, grid=(2, 3), out=buffer) is buffer
        assert_identical(buffer, expected, "im2col into a given buffer")
    transposed = to_gpu(numpy.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    assert_identical(kernels.im2col(transposed, *geometry), host_windows.im2col(x, *geometry), "strided input")


POOL_GEOMETRIES = [geometry for geometry in itertools.product(
    [(6, 6), (7, 5), (2, 3)], [(2, 2), (3, 3), (1, 2)], [(1, 1), (2, 2), (1, 2)], [(0, 0), (1, 1), (0, 1)],
    [(1, 1), (2, 1)], [False, True]) if all(geometry[3][a] <= geometry[1][a] // 2 for a in range(2))]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_kernels_equal_host_pooling(dtype, rng):
    checked = 0
    for (h, w), kernel, stride, padding, dilation, ceil_mode in POOL_GEOMETRIES:
        geometry = f"{(h, w)}, kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation}, {ceil_mode}"
        grid = host_pooling.pooled_grid((h, w), kernel, stride, padding, dilation, ceil_mode)
        if min(grid) < 1:
            continue
        x = tie_free((2, 3, h, w), rng, dtype)
        x[0, 0].flat[-1] = x[0, 0].flat[0]  # one tie: the first maximum in scan order wins
        (y, indices), cache = host_pooling.max_pool2d_forward(x, kernel, stride, padding, dilation, ceil_mode)
        y_gpu, indices_gpu = kernels.max_pool_forward(to_gpu(x), kernel, stride, padding, dilation, grid)
        assert_identical(y_gpu, y, f"max-pool {geometry}")
        assert_identical(indices_gpu, indices, f"max-pool indices {geometry}")
        dy = rng.standard_normal(y.shape).astype(dtype)
        assert_identical(kernels.max_pool_backward(to_gpu(dy), indices_gpu, x.shape, kernel, stride, padding,
                                                   dilation),
                         host_pooling.max_pool2d_backward(dy, cache), f"max-pool backward {geometry}")
        if not host_pooling.windows_overlap(kernel, stride, dilation):
            unpooled, _ = host_pooling.max_unpool2d_forward(y, indices, (h, w))
            assert_identical(kernels.max_unpool_forward(y_gpu, indices_gpu, (h, w)), unpooled, "unpool")
            dz = rng.standard_normal((2, 3, h, w)).astype(dtype)
            assert_identical(kernels.max_unpool_backward(to_gpu(dz), indices_gpu),
                             host_pooling.max_unpool2d_backward(dz, indices), "unpool backward")
        checked += 1
    assert checked > 100


def test_kernels_on_a_layer_sized_input(rng):
    """Thousands of blocks: (4, 16, 33, 31) float32 through every kernel, equal to the host code."""
    x = tie_free((4, 16, 33, 31), rng, numpy.float32)
    cols = host_windows.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1))
    assert_identical(kernels.im2col(to_gpu(x), (3, 3), (1, 1), (1, 1), (1, 1)), cols, "im2col")
    assert_identical(kernels.col2im(to_gpu(cols), x.shape, (1, 1), (1, 1), (1, 1)),
                     host_windows.col2im(cols, x.shape, (1, 1), (1, 1), (1, 1)), "col2im")
    (y, indices), cache = host_pooling.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    y_gpu, indices_gpu = kernels.max_pool_forward(to_gpu(x), (2, 2), (2, 2), (0, 0), (1, 1), y.shape[2:])
    assert_identical(y_gpu, y, "max-pool")
    assert_identical(indices_gpu, indices, "max-pool indices")
    assert_identical(kernels.max_pool_backward(to_gpu(y), indices_gpu, x.shape, (2, 2), (2, 2), (0, 0), (1, 1)),
                     host_pooling.max_pool2d_backward(y, cache), "max-pool backward")
    unpooled, _ = host_pooling.max_unpool2d_forward(y, indices, x.shape[2:])
    assert_identical(kernels.max_unpool_forward(y_gpu, indices_gpu, x.shape[2:]), unpooled, "unpool")
    assert_identical(kernels.max_unpool_backward(to_gpu(x), indices_gpu),
                     host_pooling.max_unpool2d_backward(x, indices), "unpool backward")


def test_max_pool_kernel_nan_and_minus_infinity_follow_pytorch():
    nan = numpy.nan
    x = numpy.array([[[[1.0, nan], [nan, 5.0]], [[nan, 1.0], [7.0, 2.0]]]], dtype=numpy.float32)
    y, indices = kernels.max_pool_forward(to_gpu(x), (2, 2), (2, 2), (0, 0), (1, 1), (1, 1))
    assert numpy.isnan(backend.to_numpy(y)).all()
    assert backend.to_numpy(indices).ravel().tolist() == [2, 0]  # the last NaN, as PyTorch
    x = numpy.full((1, 1, 2, 2), -numpy.inf)
    y, indices = kernels.max_pool_forward(to_gpu(x), (2, 2), (1, 1), (1, 1), (1, 1), (3, 3))
    assert (backend.to_numpy(y) == -numpy.inf).all()
    assert backend.to_numpy(indices)[0, 0].tolist() == [[0, 0, 1], [0, 0, 1], [2, 2, 3]]


def test_kernels_are_compiled_once_and_64_bit_indexing_works(monkeypatch, rng):
    x = rng.standard_normal((2, 3, 6, 5))
    expected = host_windows.im2col(x, (3, 3), (1, 2), (1, 1), (1, 1))
    kernels.im2col(to_gpu(x), (3, 3), (1, 2), (1, 1), (1, 1))
    misses = kernels.compiled_module.cache_info().misses
    for _ in range(3):
        kernels.im2col(to_gpu(x), (3, 3), (1, 2), (1, 1), (1, 1))
        kernels.col2im(to_gpu(expected), x.shape, (1, 2), (1, 1), (1, 1))
    assert kernels.compiled_module.cache_info().misses == misses
    monkeypatch.setattr(kernels, "INT32_LIMIT", 1)
    assert_identical(kernels.im2col(to_gpu(x), (3, 3), (1, 2), (1, 1), (1, 1)), expected, "im2col, 64-bit indices")
    assert_identical(kernels.col2im(to_gpu(expected), x.shape, (1, 2), (1, 1), (1, 1)),
                     host_windows.col2im(expected, x.shape, (1, 2), (1, 1), (1, 1)), "col2im, 64-bit indices")


def test_kernels_reject_integer_and_host_arrays():
    with pytest.raises(TypeError, match="im2col.*int64"):
        kernels.im2col(to_gpu(numpy.arange(16).reshape(1, 1, 4, 4)), (2, 2), (1, 1), (0, 0), (1, 1))
    with pytest.raises(TypeError, match="col2im.*cupy.ndarray.*ndarray"):
        kernels.col2im(numpy.zeros((1, 1, 2, 2, 3, 3)), (1, 1, 4, 4), (1, 1), (0, 0), (1, 1))

"""minidl.summary: the torchsummary-style table, checked against PyTorch's own output shapes."""
import io
import re

import numpy
from models.torch_equivalents import torch_models

import minidl
import models

ROW = re.compile(r"^\s*(\w+)-(\d+)\s+(\[[-\d, ]+\])\s+([\d,]+)$")


def table_rows(text):
    """[(layer type, index, output shape list, parameter count)] parsed from a summary table."""
    rows = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            layer, index, shape, parameters = match.groups()
            rows.append((layer, int(index), [int(s) for s in shape[1:-1].split(",")], int(parameters.replace(",", ""))))
    return rows


def torch_leaf_output_shapes(torch, module, x):
    """Output shapes (batch shown as -1) of every leaf module PyTorch calls, in call order, via forward hooks."""
    shapes = []

    def hook(_, __, output):
        output = output[0] if isinstance(output, tuple) else output
        shapes.append([-1] + list(output.shape[1:]))

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return shapes


def test_fcn_summary_shows_13334050_and_pytorch_output_shapes(torch):
    stream = io.StringIO()
    total = minidl.summary(models.FCN(), (3, 224, 224), file=stream)
    text = stream.getvalue()
    assert total == 13_334_050
    assert "Total params: 13,334,050" in text
    assert "Trainable params: 13,334,050" in text
    assert "Params size (MB): 50.87" in text  # 13,334,050 float32 parameters * 4 bytes / 1024**2 = 50.866
    rows = table_rows(text)
    with torch.device("meta"):
        reference = torch_models(torch).FCN(3, 2, (64, 128, 256, 512, 512))
        expected = torch_leaf_output_shapes(torch, reference, torch.zeros(2, 3, 224, 224))
    assert [shape for _, _, shape, _ in rows] == expected
    assert rows[0] == ("Conv2d", 1, [-1, 64, 224, 224], 1_792)
    assert rows[-1] == ("Conv2d", len(rows), [-1, 2, 224, 224], 66)
    assert [index for _, index, _, _ in rows] == list(range(1, len(rows) + 1))
    assert sum(parameters for *_, parameters in rows) == total


def reported_mb(text, label):
    return float(re.search(re.escape(label) + r" \(MB\): ([\d.]+)", text).group(1))


def test_summary_memory_estimate_and_batch_size_match_hand_derived_numbers():
    """The estimate is torchsummary's: float32 bytes of a batch of inputs, twice the batch's layer outputs
    (forward plus backward) and the parameters, in MB of 1024**2 bytes. Every number below is derived by
    hand from the layer definitions, not read back from the table."""
    nn = minidl.nn
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(64, 64, 4, stride=2, padding=1, bias=False),
                          nn.Upsample(scale_factor=4), nn.Conv2d(64, 2, 1))
    stream = io.StringIO()
    total = minidl.summary(model, (3, 32, 32), batch_size=16, file=stream)
    text = stream.getvalue()
    expected_rows = [("Conv2d", 1, [16, 64, 32, 32], 3 * 64 * 3 * 3),
                     ("BatchNorm2d", 2, [16, 64, 32, 32], 2 * 64),
                     ("ReLU", 3, [16, 64, 32, 32], 0),
                     ("MaxPool2d", 4, [16, 64, 16, 16], 0),
                     ("Conv2d", 5, [16, 64, 8, 8], 64 * 64 * 4 * 4),
                     ("Upsample", 6, [16, 64, 32, 32], 0),
                     ("Conv2d", 7, [16, 2, 32, 32], 64 * 2 + 2)]
    assert table_rows(text) == expected_rows
    assert total == 1_728 + 128 + 65_536 + 130 == 67_522
    assert "Total params: 67,522" in text and "Trainable params: 67,522" in text

    batch, float32_bytes, megabyte = 16, 4, 1024 ** 2
    input_mb = batch * 3 * 32 * 32 * float32_bytes / megabyte                       # 0.1875
    outputs_per_sample = 3 * 64 * 32 * 32 + 64 * 16 * 16 + 64 * 8 * 8 + 64 * 32 * 32 + 2 * 32 * 32
    assert outputs_per_sample == 284_672
    activations_mb = 2 * batch * outputs_per_sample * float32_bytes / megabyte      # 34.75
    parameters_mb = 67_522 * float32_bytes / megabyte                                # 0.2576
    assert (input_mb, activations_mb) == (0.1875, 34.75)
    assert "Input size (MB): 0.19" in text
    assert "Forward/backward pass size (MB): 34.75" in text
    assert "Params size (MB): 0.26" in text
    assert "Estimated Total Size (MB): 35.20" in text
    for label, expected in [("Input size", input_mb), ("Forward/backward pass size", activations_mb),
                            ("Params size", parameters_mb),
                            ("Estimated Total Size", input_mb + activations_mb + parameters_mb)]:
        assert abs(reported_mb(text, label) - expected) <= 0.005 + 1e-12, label


def test_summary_leaves_batchnorm_statistics_modes_and_caches_alone():
    model = models.SegNetBasic(width=3).train()
    model.enc2.convs[0].bn.eval()
    before = {key: value.copy() for key, value in model.state_dict().items()}
    total = minidl.summary(model, (1, 16, 16), file=io.StringIO())
    assert total == sum(p.size for p in model.parameters())
    for key, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, before[key], err_msg=key)
    assert model.training and model.enc1.convs[0].bn.training
    assert not model.enc2.convs[0].bn.training
    assert all(module.cache is None for module in model.modules())


def test_summary_between_forward_and_backward_leaves_the_backward_intact(rng):
    model = models.SegNetSmall(init_features=4).double()
    x, upstream = rng.standard_normal((2, 1, 16, 16)), rng.standard_normal((2, 1, 16, 16))
    model(x)
    expected_dx = model.backward(upstream)
    expected_grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    minidl.summary(model, (1, 32, 32), file=io.StringIO())
    numpy.testing.assert_array_equal(model.backward(upstream), expected_dx)
    for parameter, expected in zip(model.parameters(), expected_grads):
        numpy.testing.assert_array_equal(parameter.grad, expected)

"""minidl.summary: the torchsummary-style table, checked against PyTorch's own output shapes."""
import io
import re

import numpy
from torch_models import torch_models

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
    rows = table_rows(text)
    with torch.device("meta"):
        reference = torch_models(torch).FCN(3, 2, (64, 128, 256, 512, 512))
        expected = torch_leaf_output_shapes(torch, reference, torch.zeros(2, 3, 224, 224))
    assert [shape for _, _, shape, _ in rows] == expected
    assert rows[0] == ("Conv2d", 1, [-1, 64, 224, 224], 1_792)
    assert rows[-1] == ("Conv2d", len(rows), [-1, 2, 224, 224], 66)
    assert [index for _, index, _, _ in rows] == list(range(1, len(rows) + 1))
    assert sum(parameters for *_, parameters in rows) == total


def test_summary_memory_estimate_and_batch_size():
    model = models.SegNetSmall(init_features=2, upsample="unpool")
    stream = io.StringIO()
    minidl.summary(model, (1, 32, 32), batch_size=4, file=stream)
    text = stream.getvalue()
    rows = table_rows(text)
    assert all(shape[0] == 4 for _, _, shape, _ in rows)
    outputs = sum(int(numpy.prod(shape[1:])) for _, _, shape, _ in rows) * 4
    expected_mb = 2 * outputs * 4 / 1024 ** 2
    reported = float(re.search(r"Forward/backward pass size \(MB\): ([\d.]+)", text).group(1))
    assert abs(reported - expected_mb) < 0.006
    input_mb = float(re.search(r"Input size \(MB\): ([\d.]+)", text).group(1))
    assert abs(input_mb - 4 * 32 * 32 * 4 / 1024 ** 2) < 0.006


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

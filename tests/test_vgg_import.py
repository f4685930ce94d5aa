"""models.vgg.load_vgg16_weights and tools/convert_vgg16.py, with torchvision-named random PyTorch weights."""
import importlib.util
from pathlib import Path

import numpy
import pytest

import minidl
import models
from models.vgg import encoder_conv_blocks, load_vgg16_weights, torchvision_vgg16_names

WIDTHS = (64, 128, 256, 512, 512)
DEPTHS = (2, 2, 3, 3, 3)
TOOLS = Path(__file__).resolve().parents[1] / "tools"


def torchvision_features(torch, batch_norm):
    """A random nn.Sequential laid out as torchvision's vgg16(_bn).features, so its keys are features.<i>.*"""
    nn, layers, channels = torch.nn, [], 3
    for width, depth in zip(WIDTHS, DEPTHS):
        for _ in range(depth):
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    features = nn.Sequential(*layers)
    with torch.no_grad():
        for parameter_or_buffer in list(features.parameters()) + list(features.buffers()):
            if parameter_or_buffer.dtype.is_floating_point:
                parameter_or_buffer.uniform_(0.5, 1.5)
            else:
                parameter_or_buffer.fill_(7)
    return nn.ModuleDict({"features": features})


def save_state(module, path):
    minidl.save(path, {key: value.numpy() for key, value in module.state_dict().items()})


def test_plain_vgg16_weights_fill_the_fcn8s_encoder_in_order(torch, tmp_path):
    reference = torchvision_features(torch, batch_norm=False)
    path = tmp_path / "vgg16.npz"
    save_state(reference, path)
    model = models.FCN8s(fc_channels=8)
    loaded = load_vgg16_weights(model, path)
    assert len(loaded) == 26 and loaded[0] == "features.0.weight" and loaded[-1] == "features.28.bias"
    state = reference.state_dict()
    for block, (conv_name, _) in zip(encoder_conv_blocks(model), torchvision_vgg16_names(False)):
        numpy.testing.assert_array_equal(block.conv.weight.data, state[f"{conv_name}.weight"].numpy())
        numpy.testing.assert_array_equal(block.conv.bias.data, state[f"{conv_name}.bias"].numpy())
    assert model.block3.convs[2].conv.weight.shape == tuple(state["features.14.weight"].shape)


def test_vgg16_bn_weights_fill_segnet_convs_and_batch_norms(torch, tmp_path):
    reference = torchvision_features(torch, batch_norm=True)
    path = tmp_path / "vgg16_bn.npz"
    save_state(reference, path)
    model = models.SegNet(in_channels=3)
    load_vgg16_weights(model, path)
    state = reference.state_dict()
    block = model.enc5.convs[2]                         # the 13th conv: features.40, its BN features.41
    numpy.testing.assert_array_equal(block.conv.weight.data, state["features.40.weight"].numpy())
    numpy.testing.assert_array_equal(block.bn.running_var, state["features.41.running_var"].numpy())
    numpy.testing.assert_array_equal(model.enc1.convs[0].bn.weight.data, state["features.1.weight"].numpy())
    assert int(model.enc1.convs[0].bn.num_batches_tracked) == 7
    assert not numpy.any(model.dec5.convs[0].conv.weight.data >= 0.5)  # the decoder keeps its own init


def test_plain_weights_into_a_batchnorm_encoder_fill_only_the_convs(torch, tmp_path):
    reference = torchvision_features(torch, batch_norm=False)
    path = tmp_path / "vgg16.npz"
    save_state(reference, path)
    model = models.SegNet(in_channels=3)
    load_vgg16_weights(model, path)
    expected_bias = reference.state_dict()["features.7.bias"].numpy()
    numpy.testing.assert_array_equal(model.enc2.convs[1].conv.bias.data, expected_bias)
    numpy.testing.assert_array_equal(model.enc2.convs[1].bn.running_mean, numpy.zeros(128, numpy.float32))


def test_mismatched_names_or_shapes_are_clear_errors_and_copy_nothing(tmp_path):
    rng = numpy.random.default_rng(0)
    weights = {}
    for (conv_name, _), (c_in, c_out) in zip(torchvision_vgg16_names(False), [(3, 64), (64, 64), (64, 128),
                                             (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
                                             (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]):
        weights[f"{conv_name}.weight"] = rng.standard_normal((c_out, c_in, 3, 3)).astype(numpy.float32)
        weights[f"{conv_name}.bias"] = rng.standard_normal(c_out).astype(numpy.float32)
    model = models.FCN32s(fc_channels=8)
    before = model.block1.convs[0].conv.weight.data.copy()

    minidl.save(tmp_path / "extra.npz", dict(weights, **{"features.30.weight": numpy.zeros(3, numpy.float32)}))
    with pytest.raises(KeyError, match=r"unexpected keys \['features.30.weight'\]"):
        load_vgg16_weights(model, tmp_path / "extra.npz")

    minidl.save(tmp_path / "missing.npz", {k: v for k, v in weights.items() if k != "features.19.bias"})
    with pytest.raises(KeyError, match=r"missing keys \['features.19.bias'\]"):
        load_vgg16_weights(model, tmp_path / "missing.npz")

    minidl.save(tmp_path / "ok.npz", weights)
    with pytest.raises(ValueError, match=r"key 'features.0.weight' has shape \(64, 3, 3, 3\), "
                                         r"the model expects \(64, 1, 3, 3\)"):
        load_vgg16_weights(models.FCN32s(in_channels=1, fc_channels=8), tmp_path / "ok.npz")
    with pytest.raises(ValueError, match=r"encoder has conv blocks of depths \(2, 2, 2, 2, 2\)"):
        load_vgg16_weights(models.FCN(), tmp_path / "ok.npz")
    numpy.testing.assert_array_equal(model.block1.convs[0].conv.weight.data, before)


def test_converter_turns_a_pth_into_the_npz_the_loader_reads(torch, tmp_path):
    spec = importlib.util.spec_from_file_location("convert_vgg16", TOOLS / "convert_vgg16.py")
    convert_vgg16 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert_vgg16)
    reference = torchvision_features(torch, batch_norm=False)
    torch.save(reference.state_dict(), tmp_path / "vgg16.pth")
    keys = convert_vgg16.convert(tmp_path / "vgg16.pth", tmp_path / "vgg16.npz")
    assert "features.28.bias" in keys
    model = models.FCN16s(fc_channels=8)
    load_vgg16_weights(model, tmp_path / "vgg16.npz")
    numpy.testing.assert_array_equal(model.block4.convs[0].conv.weight.data,
                                     reference.state_dict()["features.17.weight"].numpy())

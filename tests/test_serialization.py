"""state_dict / load_state_dict and minidl.save / minidl.load: round trips, key errors, casts, atomic writes."""
import os

import numpy
import pytest

import minidl
from minidl.nn import Conv2d, ConvTranspose2d, ReLU, Sequential
from minidl.serialization import atomic_output


def small_model():
    return Sequential(Conv2d(2, 3, 3, padding=1), ReLU(), ConvTranspose2d(3, 1, 2, stride=2))


class OpensAFileWhenUnpickled:
    """Unpickling this object creates ``path``: a stand-in for code a malicious checkpoint would run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_through_save_and_load(tmp_path, rng):
    minidl.manual_seed(1)
    source = small_model()
    minidl.manual_seed(2)
    target = small_model()
    path = tmp_path / "model.npz"
    minidl.save(path, source.state_dict())
    loaded = minidl.load(path)
    assert list(loaded) == list(source.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(isinstance(value, numpy.ndarray) and value.dtype == numpy.float32 for value in loaded.values())
    target.load_state_dict(loaded)
    for key, value in source.state_dict().items():
        numpy.testing.assert_array_equal(target.state_dict()[key], value)
    x = rng.standard_normal((1, 2, 4, 4)).astype(numpy.float32)
    numpy.testing.assert_array_equal(target(x), source(x))


def test_state_dict_is_a_copy():
    model = small_model()
    state = model.state_dict()
    state["0.weight"][...] = 0
    assert model[0].weight.data.any()


def test_numbers_and_strings_round_trip(tmp_path):
    path = tmp_path / "state"  # no .npz suffix: the file is written exactly where asked
    minidl.save(path, {"step": 12, "lr": 0.5, "name": "adam", "moments": numpy.arange(4.0)})
    assert os.listdir(tmp_path) == ["state"]
    loaded = minidl.load(path)
    assert int(loaded["step"]) == 12 and float(loaded["lr"]) == 0.5 and str(loaded["name"]) == "adam"
    numpy.testing.assert_array_equal(loaded["moments"], numpy.arange(4.0))


def test_missing_key_is_named():
    state = small_model().state_dict()
    del state["2.bias"]
    with pytest.raises(RuntimeError, match=r"missing keys \['2.bias'\], unexpected keys \[\]"):
        small_model().load_state_dict(state)


def test_unexpected_key_is_named():
    state = small_model().state_dict()
    state["3.weight"] = numpy.zeros(2, numpy.float32)
    with pytest.raises(RuntimeError, match=r"missing keys \[\], unexpected keys \['3.weight'\]"):
        small_model().load_state_dict(state)


def test_mis_shaped_key_is_named_and_nothing_is_copied():
    model = small_model()
    before = model.state_dict()
    state = small_model().state_dict()
    state["2.weight"] = numpy.zeros((3, 1, 3, 3), numpy.float32)
    with pytest.raises(RuntimeError, match=r"Sequential.load_state_dict: key '2.weight' has shape \(3, 1, 3, 3\), "
                                         r"the model expects \(3, 1, 2, 2\)"):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("bad_value, dtype_text", [
    (numpy.full((1,), "x"), "<U1"),
    (numpy.full((1,), 1 + 2j, numpy.complex64), "complex64"),
    (numpy.array([None], dtype=object), "object"),
])
def test_a_value_that_is_not_real_numbers_is_named_and_nothing_is_copied(bad_value, dtype_text):
    model = small_model()
    before = model.state_dict()
    state = {key: numpy.ones_like(value) for key, value in before.items()}
    state["2.bias"] = bad_value  # the last key: every other would be copied if not checked first
    with pytest.raises(TypeError, match=f"Sequential.load_state_dict: key '2.bias' has dtype {dtype_text}; "
                                        "expected a real number array"):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, before[key])


def test_non_strict_load_reports_and_loads_the_rest():
    model = small_model()
    state = {"0.weight": numpy.ones((3, 2, 3, 3)), "extra": numpy.zeros(1)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["0.bias", "2.weight", "2.bias"] and unexpected == ["extra"]
    assert (model[0].weight.data == 1).all()


@pytest.mark.parametrize("model_dtype, file_dtype", [(numpy.float32, numpy.float64), (numpy.float64, numpy.float32)])
def test_load_state_dict_casts_to_the_model_dtype(model_dtype, file_dtype, tmp_path):
    model = small_model().to(dtype=model_dtype)
    weight = model[0].weight.data
    state = {key: (value + 0.25).astype(file_dtype) for key, value in small_model().state_dict().items()}
    minidl.save(tmp_path / "cast.npz", state)
    model.load_state_dict(minidl.load(tmp_path / "cast.npz"))
    assert model[0].weight.data is weight and weight.dtype == model_dtype
    assert all(p.data.dtype == model_dtype for p in model.parameters())
    numpy.testing.assert_array_equal(weight, state["0.weight"].astype(model_dtype))


def test_loads_a_pytorch_state_dict(torch):
    theirs = torch.nn.Conv2d(2, 3, 3)
    ours = Conv2d(2, 3, 3)
    ours.load_state_dict(theirs.state_dict())
    numpy.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    numpy.testing.assert_array_equal(ours.bias.data, theirs.bias.detach().numpy())


def test_save_overwrites_atomically_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    minidl.save(path, {"a": numpy.zeros(3)})
    minidl.save(path, {"a": numpy.ones(3)})
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    numpy.testing.assert_array_equal(minidl.load(path)["a"], numpy.ones(3))


def test_save_of_an_object_refuses_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    minidl.save(path, {"a": numpy.arange(3.0)})
    with pytest.raises(TypeError, match="minidl.save: entry 'bad' is not an array or number"):
        minidl.save(path, {"a": numpy.zeros(3), "bad": {"nested": 1}})
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    numpy.testing.assert_array_equal(minidl.load(path)["a"], numpy.arange(3.0))


def test_a_save_failing_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    minidl.save(path, {"a": numpy.arange(3.0)})

    def disk_full(stream, array, allow_pickle):
        stream.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(numpy.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space left"):
        minidl.save(path, {"a": numpy.zeros(3)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    numpy.testing.assert_array_equal(minidl.load(path)["a"], numpy.arange(3.0))


def test_atomic_output_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("old")
    with atomic_output(path) as temporary:
        assert os.path.dirname(temporary) == str(tmp_path) and temporary.endswith(".csv")
        assert path.read_text() == "old"
        with open(temporary, "w") as stream:
            stream.write("new")
    assert os.listdir(tmp_path) == ["history.csv"] and path.read_text() == "new"


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "curves.png"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_output(path) as temporary:
            with open(temporary, "w") as stream:
                stream.write("half")
            raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == ["curves.png"] and path.read_text() == "old"


def test_names_that_are_numpy_keywords_round_trip(tmp_path):
    path = tmp_path / "names.npz"
    minidl.save(path, {"file": numpy.ones(2), "allow_pickle": 3})
    loaded = minidl.load(path)
    numpy.testing.assert_array_equal(loaded["file"], numpy.ones(2))
    assert int(loaded["allow_pickle"]) == 3


def test_load_never_unpickles(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npz"
    numpy.savez(path, weights=numpy.array([OpensAFileWhenUnpickled(str(marker))], dtype=object))
    with pytest.raises(ValueError, match="minidl.load: .*evil.npz holds pickled objects"):
        minidl.load(path)
    assert not marker.exists()


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="minidl.load: no such file: .*absent.npz"):
        minidl.load(tmp_path / "absent.npz")
    numpy.save(tmp_path / "single.npy", numpy.zeros(3))
    with pytest.raises(ValueError, match="single.npy .*a single .npy array, not an npz archive"):
        minidl.load(tmp_path / "single.npy")
    (tmp_path / "truncated.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match="minidl.load: .*truncated.npz"):
        minidl.load(tmp_path / "truncated.npz")


@pytest.mark.parametrize("content", [b"a text file\n", b"", b"\x80\x04K\x01."], ids=["text", "empty", "pickle"])
def test_a_file_that_is_no_npz_archive_is_named_without_advice_to_unpickle(tmp_path, content):
    path = tmp_path / "notes.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"minidl.load: .*notes.npz is not an .npz archive written by minidl.save$") \
            as caught:
        minidl.load(path)
    assert "pickle" not in str(caught.value)


def test_load_reads_only_the_selected_entries(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    minidl.save(path, {"model.weight": numpy.ones((2, 2)), "epoch": 3})
    read = []
    original = numpy.lib.format.read_array
    monkeypatch.setattr(numpy.lib.format, "read_array",
                        lambda stream, *args, **kwargs: read.append(1) or original(stream, *args, **kwargs))
    loaded = minidl.load(path, select=lambda name: not name.startswith("model."))
    assert list(loaded) == ["epoch"] and int(loaded["epoch"]) == 3 and len(read) == 1


def load_tool(name):
    """A module of tools/ by file name."""
    import importlib.util

    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_figure_tool_writes_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = load_tool("make_figures")
    path = tmp_path / "im2col.png"
    path.write_bytes(b"old figure")

    def disk_full(figure, target, **kwargs):
        with open(target, "wb") as stream:
            stream.write(b"half a png")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    with pytest.raises(OSError, match="No space left"):
        figures.im2col_figure(path)
    assert os.listdir(tmp_path) == ["im2col.png"] and path.read_bytes() == b"old figure"

"""Input validation shared by the layers: clear errors that name the layer and the shapes."""


def shape_text(x):
    return str(tuple(int(s) for s in x.shape))


def check_float_array(layer, x, name="input"):
    """TypeError unless ``x`` is an array of a floating dtype."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{layer}: expected an array as {name}, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer}: expected a floating-point {name}, got dtype {x.dtype} "
                        f"for {name} of shape {shape_text(x)}")


def check_input_4d(layer, x, channels=None, channel_name="input channels"):
    """The standard checks for an (N, C, H, W) layer input."""
    check_float_array(layer, x)
    if x.ndim != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, C, H, W), got input of shape {shape_text(x)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels} {channel_name}, got input of shape {shape_text(x)}")


def check_dtype_matches(layer, x, parameter, name="weight"):
    """TypeError when the input's float dtype differs from the parameter's, as PyTorch."""
    if x.dtype != parameter.dtype:
        raise TypeError(f"{layer}: input dtype {x.dtype} (shape {shape_text(x)}) does not match {name} dtype "
                        f"{parameter.dtype}; cast the module with .float() / .double() or the input with astype")


"""Convert a PyTorch VGG16 / VGG16-BN state dict (.pth) to the npz that ``models.vgg.load_vgg16_weights`` reads.

    python tools/convert_vgg16.py vgg16-397923af.pth vgg16.npz

Keys keep torchvision's names (``features.0.weight`` ...); ``classifier.*`` is kept too (the loader
ignores it). Needs PyTorch only when run; the npz is written with ``minidl.save`` (no pickle).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minidl  # noqa: E402


def convert(pth_path, npz_path):
    """Read the state dict (a dict of tensors) at ``pth_path`` and save it as npz; returns the keys written."""
    import torch

    state = torch.load(pth_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not any(key.startswith("features.") for key in state):
        raise ValueError(f"convert_vgg16: {pth_path} holds no torchvision VGG state dict (no 'features.*' keys)")
    arrays = {key: value.detach().cpu().numpy() for key, value in state.items() if hasattr(value, "detach")}
    minidl.save(npz_path, arrays)
    return sorted(arrays)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pth", help="PyTorch state dict, e.g. vgg16-397923af.pth from torchvision")
    parser.add_argument("npz", help="output npz path")
    args = parser.parse_args(argv)
    keys = convert(args.pth, args.npz)
    print(f"wrote {len(keys)} arrays to {args.npz}")


if __name__ == "__main__":
    main()

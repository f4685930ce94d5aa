"""``python -m bench [--quick] [--engine reference|fast] [names...]``: run every benchmark script in ``bench/``
(or the named ones)."""
import argparse
import importlib
import os
import sys

from bench.common import add_engine_option, machine_summary, markdown_table, steady_host, use_engine
from minidl.backend import gpu_available

HELPERS = {"__init__", "__main__", "common", "profile_step", "inspect_overhead"}  # these time minidl alone: run by name


def script_names():
    """Every benchmark script in this folder, in alphabetical order."""
    folder = os.path.dirname(os.path.abspath(__file__))
    return sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".py") and name[:-3] not in HELPERS)


def main(argv=None):
    available = script_names()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"scripts to run (default: all of {available})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test")
    add_engine_option(parser)
    options = parser.parse_args(argv)
    use_engine(options.engine)
    unknown = sorted(set(options.names) - set(available))
    if unknown:
        parser.error(f"no benchmark script named {unknown}; available: {available}")
    print(machine_summary(steady_host()))
    for name in options.names or available:
        script = importlib.import_module(f"bench.{name}")
        print(f"\n## {name}{' (quick)' if options.quick else ''}\n")
        if getattr(script, "REQUIRES_GPU", False) and not gpu_available():
            print("skipped: no usable GPU (minidl.backend.gpu_available() is False)")
            continue
        print(markdown_table(script.run(quick=options.quick)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""The train_lung.py command line under test: the loaded script and the helpers its tests share
(tests/test_train_lung.py, tests/test_cli_faults.py)."""
import csv
import importlib.util
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_lung.py")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # the models package lives at the repository root
_spec = importlib.util.spec_from_file_location("train_lung", SCRIPT)
train_lung = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_lung)

TINY = ["--size", "32", "--synthetic-count", "14", "--init-features", "4", "--batch-size", "4", "--quiet",
        "--no-cache"]


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of train_lung.main(argv)."""
    status = train_lung.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def history_of(run_dir):
    """The rows of a run folder's history.csv, as dicts."""
    with open(os.path.join(run_dir, "history.csv")) as stream:
        return list(csv.DictReader(stream))


def temporary_files(folder):
    """Names of the atomic writes' temporary files left in ``folder``."""
    return [name for name in os.listdir(folder) if name.startswith(".tmp")]


def long_run_with_a_checkpoint(run_dir):
    """A 200-epoch tiny training in a subprocess, returned once its first last.npz exists (or it ended)."""
    process = subprocess.Popen([sys.executable, SCRIPT, *TINY, "--epochs", "200", "--out", run_dir], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(run_dir, "last.npz")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return process

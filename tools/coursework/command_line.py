"""What tools/make_assignment.py and tools/grade.py share on the command line: one-line errors, and output
that a reader may stop reading (``| head``) without a traceback, and signals that stop them in one line."""
import argparse
import contextlib
import os
import signal
import sys

from minidl.training.loop import STOP_SIGNALS, StopSignal, raise_stop_signal


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def show(lines):
    """Print ``lines`` to stdout; when the reader has gone (a closed pipe), the rest of the output is dropped."""
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush finds no pipe


@contextlib.contextmanager
def stopped_in_one_line(prog):
    """Run the block with Ctrl-C, SIGTERM and SIGHUP raised as KeyboardInterrupt (so every ``finally`` and
    cleanup runs); one of them ends the program with one line on stderr and exit status 128 + the signal."""
    handlers = {number: signal.signal(number, raise_stop_signal) for number in STOP_SIGNALS}
    try:
        yield
    except KeyboardInterrupt as stop:
        number = stop.signal_number if isinstance(stop, StopSignal) else signal.SIGINT
        print(f"{prog}: stopped by {signal.Signals(number).name}", file=sys.stderr)
        sys.exit(128 + number)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


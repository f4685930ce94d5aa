"""What tools/make_assignment.py and tools/grade.py share on the command line: one-line errors, and output
that a reader may stop reading (``| head``) without a traceback."""
import argparse
import os
import sys


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

"""Write a student copy of minidl: the coursework's tasks blanked, public tests included.

    python tools/make_assignment.py --all DEST              every task blanked
    python tools/make_assignment.py --assignment 2 DEST     assignments 2 to 4 blanked, assignment 1 solved
    python tools/make_assignment.py --blank conv2d,relu DEST
    python tools/make_assignment.py --solved DEST           nothing blanked (the capstone's solved copy)
    python tools/make_assignment.py --list                  assignments, tasks, points and functions

DEST must be a new or empty folder outside the repository. The copy holds no answers and runs the reference
engine only; students run ``python -m pytest -m TASK`` in it. See tools/coursework/student_copy.py for what it
leaves out. Exit status 2 for bad input; 128 + the signal after Ctrl-C, SIGTERM or SIGHUP, with nothing left
behind.
"""
import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
from tools.coursework.command_line import OneLineParser, show, stopped_in_one_line  # noqa: E402
from tools.coursework.student_copy import assignment_tasks, make_student_copy, task_listing, task_names  # noqa: E402
from tools.coursework.tasks import TASKS  # noqa: E402


def build_parser():
    parser = OneLineParser(prog="make_assignment.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="tasks: " + ", ".join(task.name for task in TASKS))
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--all", action="store_true", help="blank every task")
    choice.add_argument("--assignment", metavar="N", help="blank the tasks of assignment N (1-4) and of the later ones")
    choice.add_argument("--blank", metavar="TASKS", help="blank these tasks, comma-separated")
    choice.add_argument("--solved", action="store_true", help="blank nothing: the fully solved copy")
    choice.add_argument("--list", action="store_true", help="print the assignments, tasks, points and functions")
    parser.add_argument("dest", nargs="?", metavar="DEST", help="the new or empty folder to write the copy into")
    return parser


def chosen_tasks(args):
    """The task names the options ask to blank; ValueError for unknown ones."""
    if args.all:
        return [task.name for task in TASKS]
    if args.assignment is not None:
        return assignment_tasks(args.assignment)
    if args.blank is not None:
        return task_names(args.blank)
    return []


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        if args.dest is not None:
            parser.error("--list takes no DEST")
        show(task_listing())
        return 0
    if args.dest is None:
        parser.error("give DEST, the folder to write the copy into")
    try:
        blanked = chosen_tasks(args)
        with stopped_in_one_line(parser.prog):  # a half-made copy is removed on the way out
            make_student_copy(args.dest, blanked)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.exit(2, f"{parser.prog}: error: {error.filename or args.dest}: {error.strerror or error}\n")
    show([f"wrote {args.dest}: a student copy with {', '.join(blanked) if blanked else 'no task'} blanked; "
          f"students run: cd {args.dest} && python -m pytest -m TASK"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The held-out grading pack (never copied to students): ``python tools/grade.py STUDENT_DIR`` runs it.

runner.py     one worker process per task (time limit, killed with its process group), the report
worker.py     the worker's entry: imports this pack under its own name, the copy first on sys.path
session.py    inside a worker: import the copy under the guard, grade each case, then the PyTorch equivalents
guard.py      the import guard (torch, scipy, minidl.fast, ... while the student's code is imported and runs)
versions.py   every task function as the copy's and as the instructor's, and the switch between them
cases.py      a held-out case, and how one is graded (instructor's run, student's run, comparison)
measures.py   the grader's own relative errors and central differences
harness.py    running layers, losses and optimizers for the cases, and their PyTorch equivalents
assignment1.py ... assignment4.py   the held-out cases of each task; zoo.py the gradient checker's bug zoo
checks.py     which cases grade which task
scoring.py    the points rule and the table

Points: a task earns its points times the fraction of its cases passed (for the gradient checker, of the zoo
members it judged right); 0 when the copy does not import, or the task crashed its grading process, timed
out, or imported a forbidden module.
"""

"""Points from the cases: the rule, a task's row, the report's table.

The rule: a task earns its points times the fraction of its cases passed (for the gradient checker, of the
zoo members it judged right). It earns 0 when its grading process crashed or timed out, when the copy does
not import, and when the task's code imported a forbidden module (torch, scipy, minidl.fast, ...).
"""
RULE = ("a task earns its points times the fraction of its cases passed; 0 if the copy does not import, "
        "the task crashed its grading process, timed out, or imported a forbidden module")


def row(task, status, reason, points=0.0, cases=()):
    """One task's entry of the report."""
    return {"name": task.name, "assignment": task.assignment, "points": round(points, 2), "max_points": task.points,
            "status": status, "reason": reason, "cases": list(cases)}


def task_row(task, result):
    """The row of ``task`` from its worker's ``result`` ({"cases", "forbidden", "failure"})."""
    cases = result["cases"]
    if result["forbidden"]:
        return row(task, "forbidden", f"imported {', '.join(result['forbidden'])} (not allowed)", cases=cases)
    if result["failure"] is not None:
        status = "timed out" if result["failure"].startswith("timed out") else "crashed"
        return row(task, status, result["failure"], cases=cases)
    passed = sum(case["passed"] for case in cases)
    failed = [case for case in cases if not case["passed"]]
    if not failed:
        return row(task, "ok", "ok", task.points, cases)
    if all(case["reason"] == failed[0]["reason"] for case in failed) and not passed:
        reason = failed[0]["reason"]
    else:
        reason = f"{failed[0]['reason']} ({passed} of {len(cases)} cases passed)"
    status = failed[0]["reason"].split(" ")[0].rstrip(":")
    return row(task, status, reason, task.points * passed / len(cases), cases)


def total(rows):
    """{"points", "max_points"} over ``rows``."""
    return {"points": round(sum(entry["points"] for entry in rows), 2),
            "max_points": sum(entry["max_points"] for entry in rows)}


def number(value):
    """Points as printed: 12, 7.5, 8.33."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def table(rows):
    """The table's lines: a header, one row per task (A: the assignment), the score."""
    width = max(len("task"), *(len(entry["name"]) for entry in rows))
    lines = [f"{'task':<{width}}  {'A':>1}  {'points':>13}  reason"]
    for entry in rows:
        points = f"{number(entry['points'])} / {entry['max_points']}"
        lines.append(f"{entry['name']:<{width}}  {entry['assignment']:>1}  {points:>13}  {entry['reason']}")
    score = total(rows)
    lines.append(f"score: {number(score['points'])} / {score['max_points']}")
    return lines

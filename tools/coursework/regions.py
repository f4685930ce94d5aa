"""Solution regions in source files: find them, blank them, read what they hold.

A region is a run of lines inside one function, opened by a line ``# BEGIN SOLUTION`` and closed by a line
``# END SOLUTION`` at the same indentation. Functions are found by qualified name (``Class.method``).
"""
import ast

from .tasks import BEGIN, END


def find_definition(source, qualname):
    """The ast node of function ``qualname`` ("name" or "Class.method") in ``source``; ValueError if absent."""
    body = ast.parse(source).body
    node = None
    for part in qualname.split("."):
        node = next((child for child in body if isinstance(child, (ast.FunctionDef, ast.ClassDef))
                     and child.name == part), None)
        if node is None:
            raise ValueError(f"no definition {qualname} (missing {part!r})")
        body = node.body
    return node


def regions(source, qualname):
    """[(begin, end)]: 0-based line numbers of each region's marker lines inside function ``qualname``."""
    node = find_definition(source, qualname)
    lines = source.splitlines()
    found, begin = [], None
    for number in range(node.lineno - 1, _last_line(lines, node)):
        text = lines[number].strip()
        if text == BEGIN:
            if begin is not None:
                raise ValueError(f"{qualname}: nested {BEGIN} at line {number + 1}")
            begin = number
        elif text == END:
            if begin is None or _indent(lines[number]) != _indent(lines[begin]):
                raise ValueError(f"{qualname}: {END} at line {number + 1} closes no {BEGIN} of its indentation")
            found.append((begin, number))
            begin = None
    if begin is not None:
        raise ValueError(f"{qualname}: {BEGIN} at line {begin + 1} is never closed")
    return found


def _last_line(lines, node):
    """1-based last line of ``node``'s definition, counting the comments after its last statement (an END marker)
    that are indented deeper than the ``def``."""
    last, depth = node.end_lineno, node.col_offset
    while last < len(lines) and (not lines[last].strip() or (lines[last].strip().startswith("#")
                                                               and len(_indent(lines[last])) > depth)):
        last += 1
    return last


def _indent(line):
    return line[:len(line) - len(line.lstrip())]


def solution_lines(source, qualname):
    """The non-blank lines inside the regions of ``qualname``, stripped (the answer a copy must not hold)."""
    lines = source.splitlines()
    return [lines[k].strip() for begin, end in regions(source, qualname) for k in range(begin + 1, end)
            if lines[k].strip()]


def blank(source, qualname, message):
    """``source`` with every region of ``qualname`` (markers included) replaced by one
    ``raise NotImplementedError(message)`` at the region's indentation. ValueError if it has no region."""
    found = regions(source, qualname)
    if not found:
        raise ValueError(f"{qualname} has no {BEGIN} ... {END} region")
    lines = source.splitlines(keepends=True)
    for begin, end in reversed(found):
        lines[begin:end + 1] = [f"{_indent(lines[begin])}raise NotImplementedError({message!r})\n"]
    return "".join(lines)

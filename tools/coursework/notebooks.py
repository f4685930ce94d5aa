"""Notebooks in a student copy: answer cells emptied, outputs cleared (nbformat 4 JSON, read with ``json``).

An answer cell carries the tag ``solution`` in its metadata; a tag ``task:NAME`` says which task it belongs to.
"""
import json

SOLUTION_TAG = "solution"
TASK_TAG_PREFIX = "task:"
MARKDOWN_ANSWER = "*Your answer here.*"


def code_answer(tags):
    """The comment that replaces an answer code cell, naming its task where a ``task:NAME`` tag gives it."""
    task = next((tag[len(TASK_TAG_PREFIX):] for tag in tags if tag.startswith(TASK_TAG_PREFIX)), None)
    return f"# Your code here (task {task})" if task else "# Your code here"


def blank_cell(cell):
    """``cell`` (a dict) with its source emptied if it is an answer, and its outputs cleared if it is code."""
    tags = cell.get("metadata", {}).get("tags", [])
    if SOLUTION_TAG in tags:
        cell["source"] = code_answer(tags) if cell["cell_type"] == "code" else MARKDOWN_ANSWER
    if cell["cell_type"] == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    return cell


def blank_notebook(text):
    """The JSON text of a notebook with its answer cells emptied and every output cleared."""
    notebook = json.loads(text)
    notebook["cells"] = [blank_cell(cell) for cell in notebook.get("cells", [])]
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"

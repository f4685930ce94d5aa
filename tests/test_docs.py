"""The learning material: every code reference in docs/ resolves, quoted code still reads as quoted, every link
and figure exists, figures rebuild.

A quotation is a fenced ```python block whose first line is ``# file.py::name``: each of its other lines must
be a line of that definition's source (leading and trailing spaces aside).
"""
import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from minidl.functional.upsample import upsample_bilinear2d_forward

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))
from tools.coursework.student_docs import QUOTATION  # noqa: E402

DOCS = REPOSITORY / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = REPOSITORY / "README.md"
DOCUMENTS = PAGES + [README]
REFERENCE = re.compile(r"([A-Za-z0-9_./-]+\.py)::([A-Za-z_][A-Za-z0-9_.]*)")
DERIVATION_PAGES = ("convolution.md", "transposed_convolution.md", "pooling.md", "upsampling.md", "batchnorm.md",
                    "activations.md", "losses.md")
TIMING = re.compile(r"\d\s*(ms|seconds|GFLOP/s)\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def code_references(path):
    """[(file, dotted name)] for every ``file.py::name`` in a Markdown document."""
    return [(file, name.rstrip(".")) for file, name in REFERENCE.findall(path.read_text())]


def quotations(path):
    """[(file, dotted name, [quoted lines])] for every quotation in a Markdown document."""
    return [(file, name, [line.strip() for line in text.splitlines() if line.strip()])
            for file, name, text in QUOTATION.findall(path.read_text())]


def definition_lines(file, dotted_name):
    """The stripped source lines of ``dotted_name`` in ``file``."""
    source = (REPOSITORY / file).read_text()
    body, node = ast.parse(source).body, None
    for part in dotted_name.split("."):
        node = _named_children(body)[part]
        body = getattr(node, "body", [])
    return {line.strip() for line in ast.get_source_segment(source, node).splitlines()}


def _named_children(body):
    """{name: node} for the functions, classes and assigned names defined directly in ``body``."""
    children = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            children[node.name] = node
        elif isinstance(node, ast.Assign):
            children.update({target.id: node for target in node.targets if isinstance(target, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            children[node.target.id] = node
    return children


def resolve(file, dotted_name):
    """None if ``file`` defines ``dotted_name`` (a function, class, Class.method or constant), else the reason."""
    path = REPOSITORY / file
    if not path.is_file():
        return f"{file} does not exist"
    body = ast.parse(path.read_text()).body
    for depth, part in enumerate(dotted_name.split(".")):
        node = _named_children(body).get(part)
        if node is None:
            return f"{file} defines no {'.'.join(dotted_name.split('.')[:depth + 1])}"
        body = getattr(node, "body", [])
    return None


# a missing document is skipped here only so that the rest of the file still collects: the tests below fail on it
ALL_REFERENCES = sorted({(document.relative_to(REPOSITORY).as_posix(), file, name)
                         for document in DOCUMENTS if document.is_file() for file, name in code_references(document)})


def test_the_repository_readme_exists():
    assert README.is_file(), f"{README} is missing: the top-level README is one of the checked documents"


def test_the_pages_exist_and_reference_code():
    names = {page.name for page in PAGES}
    expected = {"README.md", "convolution.md", "transposed_convolution.md", "pooling.md", "upsampling.md",
                "batchnorm.md", "activations.md", "losses.md", "optimizers.md", "gradient_checking.md",
                "models_backward.md", "coursework.md"}
    assert expected <= names, f"missing pages: {sorted(expected - names)}"
    for page in PAGES:
        if page.name not in ("README.md", "benchmarks.md", "API.md"):  # API.md: the contract, not a lesson
            assert len(code_references(page)) >= 3, f"{page.name} points at fewer than 3 functions"


@pytest.mark.parametrize("document, file, name", ALL_REFERENCES, ids=[f"{d}:{f}::{n}" for d, f, n in ALL_REFERENCES])
def test_code_reference_resolves(document, file, name):
    problem = resolve(file, name)
    assert problem is None, f"{document} refers to {file}::{name}, but {problem}"


ALL_QUOTATIONS = [(page.name, file, name, lines) for page in PAGES for file, name, lines in quotations(page)]


@pytest.mark.parametrize("page, file, name, lines", ALL_QUOTATIONS,
                         ids=[f"{p}:{f}::{n}" for p, f, n, _ in ALL_QUOTATIONS])
def test_quoted_code_is_still_in_the_named_definition(page, file, name, lines):
    assert resolve(file, name) is None, f"{page} quotes {file}::{name}, but {resolve(file, name)}"
    missing = [line for line in lines if line not in definition_lines(file, name)]
    assert not missing, f"{page} quotes lines that {file}::{name} no longer has: {missing}"


@pytest.mark.parametrize("page", DERIVATION_PAGES)
def test_each_derivation_page_quotes_the_reference_code_and_holds_no_timings(page):
    quoted = [file for file, _, _ in quotations(DOCS / page)]
    assert quoted and all(file.startswith("minidl/functional/") for file in quoted), f"{page} quotes {quoted}"
    timing = TIMING.search((DOCS / page).read_text())
    assert timing is None, f"{page} holds a timing: {timing}"


def test_a_quotation_must_match_its_source(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\n# minidl/functional/conv.py::add_bias\n    if bias is not None:\n"
                    "    return y * 2\n```\n")
    (file, name, lines), = quotations(page)
    assert [line for line in lines if line not in definition_lines(file, name)] == ["return y * 2"]


def test_resolve_rejects_what_does_not_exist():
    assert resolve("minidl/functional/conv.py", "conv2d_backward") is None
    assert resolve("minidl/nn/conv.py", "Conv2d.backward") is None
    assert resolve("minidl/gradcheck.py", "TOLERANCE") is None
    assert resolve("minidl/functional/conv.py", "conv3d") == "minidl/functional/conv.py defines no conv3d"
    assert resolve("minidl/nn/conv.py", "Conv2d.sideways") == "minidl/nn/conv.py defines no Conv2d.sideways"
    assert resolve("minidl/nope.py", "f") == "minidl/nope.py does not exist"
    assert code_references(DOCS / "convolution.md")[0][0].endswith(".py")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_and_images_exist(document):
    assert document.is_file(), f"{document} does not exist"
    for target in LINK.findall(document.read_text()):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        linked = (document.parent / target.split("#", 1)[0]).resolve()
        assert linked.exists(), f"{document.name} links to {target}, which does not exist"


def test_the_index_links_every_page():
    index = (DOCS / "README.md").read_text()
    for page in PAGES:
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_figure_script_rebuilds_every_committed_figure(tmp_path):
    finished = subprocess.run([sys.executable, str(REPOSITORY / "tools" / "make_figures.py"), "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    built = {path.name for path in tmp_path.glob("*.png")}
    committed = {path.name for path in (DOCS / "figures").glob("*.png")}
    used = {Path(target).name for page in PAGES for target in LINK.findall(page.read_text())
            if target.startswith("figures/") and target.endswith(".png")}  # other pictures come from real runs
    assert built and built == committed, f"built {sorted(built)}, committed {sorted(committed)}"
    assert used == built, f"figures used by the pages {sorted(used)}, built {sorted(built)}"
    for name in built:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and 5_000 < len(data) < 200_000, f"{name}: {len(data)} bytes"


@pytest.mark.parametrize("in_size, out_size", [(4, 8), (5, 11), (3, 7)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_figure_draws_the_matrix_minidl_uses(in_size, out_size, align_corners):
    spec = importlib.util.spec_from_file_location("make_figures", REPOSITORY / "tools" / "make_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    identity = numpy.eye(in_size).reshape(1, 1, in_size, in_size)
    # resizing the identity along H only gives the (out, in) interpolation matrix itself
    matrix, _ = upsample_bilinear2d_forward(identity, (out_size, in_size), align_corners)
    numpy.testing.assert_allclose(figures.bilinear_matrix(in_size, out_size, align_corners), matrix[0, 0],
                                  rtol=0, atol=1e-12)

"""The course notebooks as files: ordered, committed without outputs, a parameters cell, exercises with solutions, student copies without them.

That they run top to bottom is nbval's job (``pytest --nbval-lax notebooks``, part of the suite).
"""
import json
from pathlib import Path

import pytest

from asdkit import course
from asdkit.cli import main
from asdkit.student import SOLUTION_TAG, strip_solutions, write_student_copies

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def load(path):
    return json.loads(Path(path).read_text())


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_the_course_has_its_nine_ordered_notebooks():
    prefixes = [p.name[:2] for p in NOTEBOOKS]
    assert prefixes == ["00", "01", "02", "03", "04", "05", "06", "07", "99"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    nb = load(path)
    cells = nb["cells"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code"), "committed with outputs"
    assert cells[0]["cell_type"] == "markdown" and "What this teaches" in "".join(cells[0]["source"]) and "cost" in "".join(cells[0]["source"])
    params = [c for c in cells if "parameters" in tags(c)]
    assert len(params) == 1 and "ASDKIT_SCALE" in "".join(params[0]["source"])
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Exercises" in text
    solutions = [c for c in cells if SOLUTION_TAG in tags(c)]
    assert solutions and all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions)
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "train_epoch" not in code and ".backward(" not in code  # notebooks read records; they never hold a training loop
    for used in {part.split('"')[1] for part in code.split("course.record(")[1:] if '"' in part.split(")")[0]}:
        assert used in course.COURSE, f"{path.name} asks for a course run {used!r} that does not exist"


def test_student_copies_have_no_solution_cell(tmp_path):
    files = write_student_copies(tmp_path / "student")
    assert [f.name for f in files] == [p.name for p in NOTEBOOKS]
    for original, copy in zip(NOTEBOOKS, files):
        a, b = load(original), load(copy)
        assert not [c for c in b["cells"] if SOLUTION_TAG in tags(c)]
        kept = [c for c in a["cells"] if SOLUTION_TAG not in tags(c)]
        assert [c["source"] for c in b["cells"]] == [c["source"] for c in kept]  # nothing else removed
        assert len(b["cells"]) < len(a["cells"])


def test_strip_solutions_clears_outputs_and_keeps_the_rest():
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "x = 1", "outputs": [], "execution_count": None},
                    {"cell_type": "code", "metadata": {}, "source": "y = 2", "outputs": [{"output_type": "stream", "text": "2"}], "execution_count": 3},
                    {"cell_type": "markdown", "metadata": {"tags": ["exercise"]}, "source": "Exercise"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    out = strip_solutions(nb)
    assert [c["source"] for c in out["cells"]] == ["y = 2", "Exercise"]
    assert out["cells"][0]["outputs"] == [] and out["cells"][0]["execution_count"] is None
    assert nb["cells"][1]["outputs"]  # the input is not modified


def test_cli_writes_student_copies_and_refuses_the_source_folder(tmp_path, capsys):
    assert main(["notebooks", "--student", str(tmp_path / "s")]) == 0
    assert "wrote 9 student notebooks" in capsys.readouterr().out
    assert main(["notebooks", "--student", str(NOTEBOOKS[0].parent)]) == 2
    assert "another folder" in capsys.readouterr().err
    assert main(["notebooks", "--student", str(tmp_path / "t"), "--source", str(tmp_path / "empty")]) == 2

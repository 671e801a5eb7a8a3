"""The course notebooks as files: ordered, committed without outputs, a parameters cell, exercises with solutions, student copies without them.

That they run top to bottom is nbval's job (``pytest --nbval-lax notebooks``, part of the suite).
"""
import json
import re
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


# -- no measured number typed into a markdown cell -------------------------------------------------------------------------
_CITATION = re.compile(r"(Eqs?\.|Tables?|Figs?\.|§|notebooks?|[Aa]ppendix|[Ss]ections?|Algorithm|Alg\.|lines?|stages?|rounds?|[Ee]xercise|"
                       r"[Ss]olution|epochs? of|00[2-4]|\bT\s*=|\bK\s*=|et al\.,?)\s*(\d+[-–,]\s*)?$")
_NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)")


def _declared_values() -> set[float]:
    """Every number a config field, defense option or attack option declares at some scale: a definition, not a measurement."""
    from asdkit.attacks import ATTACKS
    from asdkit.config import SCALES, config_fields
    from asdkit.defenses import DEFENSES

    values: set[float] = {0.0, 1.0, 255.0}  # pixel range and trivial counts

    def add(v):
        if isinstance(v, bool):
            return
        if isinstance(v, (int, float)):
            values.update({float(v), round(100 * float(v), 6)})
        elif isinstance(v, (list, tuple)):
            for x in v:
                add(x)
        elif isinstance(v, dict):
            for x in v.values():
                add(x)

    options = list(config_fields()) + [o for d in DEFENSES.values() for o in d.options] + [o for a in ATTACKS.values() for o in a.options]
    for o in options:
        add(o.default)
        for s in SCALES:
            add(o.default_at(s))
    for d in DEFENSES.values():
        add(list(d.presets.values()))
    for a in ATTACKS.values():
        add(list(a.scales.values()))
    return values


def measured_numbers(markdown: str, declared: set[float]) -> list[str]:
    """Numbers in ``markdown`` that are neither in an equation or code span, nor cited (a paper's equation, table, section or
    claim: the sentence names 002, 003 or 004), nor a year, a size (28×28), a notebook's number or a declared value."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`]*`|\]\([^)]*\)|^#+ .*$", " ", markdown, flags=re.S | re.M)
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z*(])|\n\s*\n|\n\s*[-*\d]+[.)]?\s", text):
        if re.search(r"\b00[2-4]\b|et al\.|\b(19|20)\d\d\b", sentence):
            continue  # a paper's claim or setting, with its citation
        for m in _NUMBER.finditer(sentence):
            token, before, after = m.group(1), sentence[max(0, m.start() - 24):m.start()], sentence[m.end():m.end() + 2]
            value = float(token.replace(",", ""))
            if _CITATION.search(before) or "×" in after or before.endswith("×") or value in declared:
                continue
            found.append(sentence[max(0, m.start() - 40):m.end() + 10].replace("\n", " "))
    return found


def test_measured_numbers_are_caught_and_definitions_pass():
    declared = _declared_values()
    assert measured_numbers("ASD reaches 80.7 % here, 10.9 points under no defense.", declared)
    assert measured_numbers("The shirts end at 53 %.", declared) and measured_numbers("It took 474 s.", declared)
    for fine in ("003 sets β = 3 and reports a TPR of 99.95 %.", "The seeds: 10 per class.", "a 3×3 patch on 28×28 images",
                 "see notebook 03 and Eq. 4", "$\\lambda_u = 75$ in `semi.py` line 120", "Table 4 (003) with T = 1..5", "stage 2 and round 8"):
        assert not measured_numbers(fine, declared), fine


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_markdown_cell_types_a_measured_number(path):
    """A number a run measures is printed by the cell after the prose, never typed into it (it would drift with the scale and machine)."""
    declared = _declared_values()
    typed = [f"cell {i}: …{hit}…" for i, c in enumerate(load(path)["cells"]) if c["cell_type"] == "markdown"
             for hit in measured_numbers("".join(c["source"]), declared)]
    assert not typed, f"{path.name} types numbers a run measures (print them from a cell instead):\n" + "\n".join(typed)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_asdkit_name_the_prose_cites_exists(path):
    """A markdown cell that names `asdkit.x.y` (the function an equation is implemented by) names something that exists."""
    import importlib

    missing = []
    for cell in load(path)["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for name in re.findall(r"`(asdkit(?:\.\w+)+)(?:\(|`)", "".join(cell["source"])):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj, rest = importlib.import_module(".".join(parts[:i])), parts[i:]
                    break
                except ImportError:
                    continue
            for attr in rest:
                obj = getattr(obj, attr, None)
            if obj is None:
                missing.append(name)
    assert not missing, f"{path.name} cites names asdkit does not have: {missing}"

"""Student copies of the course notebooks: every cell tagged ``solution`` removed, outputs cleared (Neuromatch's habit)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SOLUTION_TAG", "notebooks_dir", "strip_solutions", "write_student_copies"]

SOLUTION_TAG = "solution"


def notebooks_dir() -> Path:
    """The course notebooks beside the package (a source checkout or an editable install)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def strip_solutions(notebook: dict) -> dict:
    """A copy of ``notebook`` (nbformat JSON) without its solution cells and with every output cleared."""
    nb = json.loads(json.dumps(notebook))
    cells = []
    for cell in nb.get("cells", []):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    nb["cells"] = cells
    return nb


def write_student_copies(out: Path | str, source: Path | str | None = None) -> list[Path]:
    """Write every ``*.ipynb`` of ``source`` (default the course's) into ``out`` without solutions; returns the files written."""
    source = Path(source) if source else notebooks_dir()
    files = sorted(source.glob("[0-9]*.ipynb"))
    if not files:
        raise ValueError(f"No course notebooks (NN_*.ipynb) in {source}; give the folder with --source.")
    out = Path(out)
    if out.resolve() == source.resolve():
        raise ValueError(f"The student copies must go to another folder than the notebooks themselves ({source}).")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        nb = strip_solutions(json.loads(f.read_text()))
        (out / f.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(out / f.name)
    return written

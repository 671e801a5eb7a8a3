"""A student copy, run from ``student/`` below the folder where the course was prepared, reads the prepared records (it trains
nothing) and its checks stay while its solutions are gone."""
from __future__ import annotations

import json
import shutil

import pytest

from asdkit.student import write_student_copies


def test_a_student_copy_finds_the_prepared_records_upward_and_trains_nothing(smoke_course, fmnist_dir, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    classroom = tmp_path / "classroom"
    shutil.copytree(smoke_course, classroom / "runs")  # the instructor's prepared records, beside the students' folder
    (classroom / "data").symlink_to(fmnist_dir, target_is_directory=True)
    copies = write_student_copies(classroom / "student")
    records = sorted(p.parent.name for p in (classroom / "runs").rglob("record.pt"))
    for var in ("ASDKIT_RUNS", "ASDKIT_DATA", "ASDKIT_NOTEBOOK_RUNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ASDKIT_SCALE", "smoke")
    nb = nbformat.reads(json.dumps(json.loads(next(p for p in copies if p.name.startswith("02_")).read_text())), as_version=4)
    assert not [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert sum('course.check("02.' in c.source for c in nb.cells) == 3  # the answer cells and their checks stay
    nbclient.NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(classroom / "student")}}).execute()
    first = next(o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "runs in" in o.get("text", ""))
    assert f"runs in {classroom / 'runs'} (the nearest runs/ folder upward)" in first["text"]
    assert sorted(p.parent.name for p in (classroom / "runs").rglob("record.pt")) == records  # nothing trained
    assert not (classroom / "student" / "runs").exists()
    checks = [o["text"] for c in nb.cells if 'course.check("02.' in c.source for o in c.outputs if "text" in o]
    assert len(checks) == 3 and all("put your answer in `answer` first" in t for t in checks)

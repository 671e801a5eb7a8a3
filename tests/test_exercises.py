"""The course's checks: right or a hint, never the answer; numbers within their tolerance, percentages for fractions, names by
their display names; every student copy finds the prepared records from any folder below them."""
from __future__ import annotations

import os

import pytest

from asdkit import course
from asdkit.course import exercises


@pytest.fixture()
def planted(monkeypatch):
    """Three exercises with known answers (the real ones read records)."""
    monkeypatch.setitem(exercises.EXERCISES, "t.int", exercises.Exercise("q", lambda: 18, "int", "divide the budget."))
    monkeypatch.setitem(exercises.EXERCISES, "t.num", exercises.Exercise("q", lambda: 0.125, "number", "count them.", tolerance=0.005))
    monkeypatch.setitem(exercises.EXERCISES, "t.name", exercises.Exercise("q", lambda: "badnets", "name", "look at the table."))


@pytest.mark.parametrize("key, answer, right, says", [
    ("t.int", 18, True, "right"), ("t.int", "18", True, "right"), ("t.int", 17, False, "Too low"), ("t.int", 19.5, False, "Too high"),
    ("t.num", 0.128, True, "right"), ("t.num", "12.5 %", True, "right"), ("t.num", 12.9, True, "right"), ("t.num", 0.14, False, "Too high"),
    ("t.name", "BadNets", True, "right"), ("t.name", " badnets ", True, "right"), ("t.name", "blend", False, "Hint: look at the table."),
    ("t.int", None, False, "put your answer in `answer` first (a whole number)"), ("t.int", "many", False, "'many' is not a whole number"),
])
def test_a_check_says_right_or_gives_a_hint_never_the_answer(planted, capsys, key, answer, right, says):
    assert course.check(key, answer) is right
    out = capsys.readouterr().out
    assert says in out
    if not right:
        want = exercises.EXERCISES[key].answer()
        assert str(want) not in out.replace(str(answer), "") and "12.5" not in out.replace(str(answer), "")


def test_an_unknown_exercise_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"no exercise '9.9'; its exercises: 00.1, 00.2"):
        course.check("9.9", 1)


def test_every_exercise_without_records_is_computed_from_the_config():
    assert course.expected("00.1") == 18 and course.check("00.2", course.expected("00.2"))


def test_setup_finds_the_nearest_runs_and_data_folders_upward(tmp_path, monkeypatch):
    for var in ("ASDKIT_RUNS", "ASDKIT_DATA"):  # setup sets them; monkeypatch puts them back
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ASDKIT_SCALE", os.environ.get("ASDKIT_SCALE", "classroom"))
    (tmp_path / "runs").mkdir()
    (tmp_path / "data").mkdir()
    deep = tmp_path / "student" / "week1"
    deep.mkdir(parents=True)
    line = course.setup("smoke", start=deep)
    assert os.environ["ASDKIT_RUNS"] == str(tmp_path / "runs") and os.environ["ASDKIT_DATA"] == str(tmp_path / "data")
    assert os.environ["ASDKIT_SCALE"] == "smoke" and "scale smoke" in line and "the nearest runs/ folder upward" in line
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path / "elsewhere"))
    assert "($ASDKIT_RUNS)" in course.setup("smoke", start=deep) and os.environ["ASDKIT_RUNS"] == str(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="one of"):
        course.setup("huge", start=deep)


def test_setup_without_folders_puts_them_beside_the_project(tmp_path, monkeypatch):
    for var in ("ASDKIT_RUNS", "ASDKIT_DATA"):  # setup sets them; monkeypatch puts them back
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ASDKIT_SCALE", os.environ.get("ASDKIT_SCALE", "classroom"))
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    line = course.setup("smoke", start=tmp_path / "notebooks")
    assert os.environ["ASDKIT_RUNS"] == str(tmp_path / "runs") and "made on first use" in line

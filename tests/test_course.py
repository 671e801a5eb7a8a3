"""The course's declared runs: scales, same-data twins and runs on a shared subset."""
from __future__ import annotations

import pytest

from asdkit import course
from asdkit.config import make_config
from asdkit.records import run_folder


def test_a_run_one_scale_up_on_asds_images_is_the_result_sets_run(tmp_path, monkeypatch):
    """At a classroom course the lab twins are the lab preset's runs, so `asdkit results` and the course share their records."""
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path))
    for name, defense in (("asd-badnets-lab", "asd"), ("none-badnets-lab", "none")):
        assert run_folder(course.config(name, "classroom")).name == run_folder(make_config("lab", defense=defense)).name
        assert course.config(name, "smoke").scale == "smoke"
    assert course.config("none-badnets-lab", "classroom").train_size == course.config("asd-badnets-lab", "classroom").train_size


def test_a_run_on_an_absent_shared_subset_is_left_out_unless_named(tmp_path, monkeypatch):
    from asdkit.data import DataUnavailableError

    monkeypatch.setenv("ASDKIT_SHARED_DATA", str(tmp_path / "nowhere"))
    assert not course.available("asd-badnets-gtsrb") and course.available("asd-badnets")
    assert "asd-badnets-gtsrb" not in course.configs("smoke") and "asd-badnets" in course.configs("smoke")
    with pytest.raises(DataUnavailableError, match="gtsrb-mini.npz is not in .*nowhere.*ASDKIT_SHARED_DATA"):
        course.configs("smoke", ["asd-badnets-gtsrb"])


def test_a_run_on_a_present_shared_subset_trains_on_it_with_asds_sizes(tmp_path, monkeypatch):
    import numpy as np

    folder = tmp_path / "shared"
    folder.mkdir()
    x = np.zeros((60, 8, 8, 3), dtype=np.uint8)
    np.savez(folder / "gtsrb-mini.npz", x_train=x, y_train=np.arange(60) % 3, x_test=x, y_test=np.arange(60) % 3)
    monkeypatch.setenv("ASDKIT_SHARED_DATA", str(folder))
    asd, none = course.config("asd-badnets-gtsrb", "classroom"), course.config("none-badnets-gtsrb", "classroom")
    assert asd.dataset == none.dataset == str(folder / "gtsrb-mini.npz") and asd.scale == none.scale == "lab"
    assert (asd.train_size, asd.test_size) == (none.train_size, none.test_size)
    assert {"asd-badnets-gtsrb", "none-badnets-gtsrb"} <= set(course.configs("smoke"))

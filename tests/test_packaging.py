"""The repository's promises about itself: one dependency set in pyproject.toml and environment.yml, the layout, the two commands."""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # pip name -> conda name where they differ
NOT_PACKAGES = {"python", "pip", "-e ."}


def split_requirement(req: str) -> tuple[str, str]:
    """'torch>=2.2' -> ('torch', '>=2.2'); names lower-cased, '_' as '-'."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    for extra in ("notebooks", "test"):
        assert extra in extras, f"pyproject.toml has no [{extra}] extra"
        reqs += extras[extra]
    return dict(split_requirement(r) for r in reqs)


def environment_entries() -> list[str]:
    """The '- item' lines under dependencies: (conda ones and the pip: sub-list), by a line-based read."""
    entries, in_deps = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.strip():
            continue
        if not line.startswith((" ", "-")):  # a top-level key
            in_deps = stripped.startswith("dependencies:")
            continue
        item = stripped.strip()
        if in_deps and item.startswith("- ") and not item.endswith(":"):
            entries.append(item[2:].strip())
    return entries


def environment_requirements() -> dict[str, str]:
    return dict(split_requirement(e) for e in environment_entries() if e not in NOT_PACKAGES and not e.startswith("python"))


def test_environment_yml_names_every_dependency_of_pyproject():
    env = environment_requirements()
    missing, differ = [], []
    for name, spec in pyproject_requirements().items():
        conda = CONDA_NAMES.get(name, name)
        if conda not in env and name not in env:
            missing.append(name)
        elif env.get(conda, env.get(name)) != spec:
            differ.append(f"{name}{spec} vs {env.get(conda, env.get(name))}")
    assert not missing, f"environment.yml lacks {missing}"
    assert not differ, f"version bounds differ: {differ}"


def test_environment_yml_has_nothing_pyproject_lacks():
    wanted = {CONDA_NAMES.get(n, n) for n in pyproject_requirements()} | set(pyproject_requirements())
    extra = sorted(set(environment_requirements()) - wanted)
    assert not extra, f"environment.yml lists {extra}, which pyproject.toml does not"
    assert "-e ." in environment_entries(), "environment.yml should install asdkit itself (pip: -e .)"


def test_readme_names_the_two_commands():
    readme = ROOT / "README.md"
    assert readme.is_file(), "README.md is missing"
    text = readme.read_text()
    assert "make run" in text and "make test" in text


def test_makefile_has_run_and_test_targets():
    targets = re.findall(r"^([A-Za-z_-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
    assert "run" in targets and "test" in targets


def test_ci_runs_make_test():
    ci = ROOT / ".ci" / "run"
    assert ci.is_file() and os.access(ci, os.X_OK), ".ci/run must exist and be executable"
    commands = [line.strip() for line in ci.read_text().splitlines() if not line.strip().startswith("#")]
    assert "make test" in commands


@pytest.mark.parametrize("path", ["asdkit/", "notebooks/", "data/README.md", "figures/", "tests/", "environment.yml", "README.md"])
def test_top_level_layout(path):
    p = ROOT / path
    assert (p.is_dir() if path.endswith("/") else p.is_file()), f"{path} is missing"


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["asdkit"] == "asdkit.cli:main"
    from asdkit import cli

    assert callable(cli.main)

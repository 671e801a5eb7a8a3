"""Make the checkout importable when pytest runs without an installed asdkit."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# --- shared fixtures for the engine/runner/cli tests (appended; keep small) -------------------
import os  # noqa: E402

import pytest  # noqa: E402

# The suite's smoke-scale thresholds were set in float32; 'auto' would pick bfloat16 on some CPUs and not on others,
# so every test (and every notebook kernel it starts) trains in float32 unless it asks for bf16 itself (test_precision.py).
os.environ["ASDKIT_PRECISION"] = "fp32"

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
    """A session-wide ASDKIT_DATA folder, so Fashion-MNIST's cache file is built once per session."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST is absent ({DEBIAN_FASHION_MNIST}; apt-get install dataset-fashion-mnist)")
    return tmp_path_factory.mktemp("asdkit-data")


@pytest.fixture
def runs_env(fmnist_dir, tmp_path, monkeypatch):
    """ASDKIT_DATA = the session data folder, ASDKIT_RUNS = a fresh temporary folder (returned)."""
    monkeypatch.setenv("ASDKIT_DATA", str(fmnist_dir))
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads run 5-20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smoke_course(fmnist_dir, tmp_path_factory):
    """Every record the course reads, prepared once at smoke scale in a temporary store (returned), one thread."""
    import torch

    from asdkit import course

    runs = tmp_path_factory.mktemp("smoke-course") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setenv("ASDKIT_RUNS", str(runs))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            course.prepare("smoke", quiet=True)
        finally:
            torch.set_num_threads(threads)
    return runs

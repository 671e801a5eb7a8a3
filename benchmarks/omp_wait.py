"""Training steps of the compact network with OpenMP's active (spinning) or passive waiting, each in a fresh process.

    python benchmarks/omp_wait.py            # on an idle machine, then again with another run on one core

Prints seconds a step for: 2 threads spinning (OpenMP's default), 2 threads waiting passively
(asdkit's default since it sets OMP_WAIT_POLICY=PASSIVE before torch loads), and 1 thread, with the
ratios to the first. The setting must be made before torch is imported, hence one process each.
"""
import os
import subprocess
import sys

STEP = r'''
import time, torch
from asdkit.models import make_model
torch.manual_seed(0)
m = make_model("compact", num_classes=10, in_channels=1)
opt = torch.optim.Adam(m.parameters())
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
for _ in range(3):
    step()
t = time.perf_counter()
for _ in range(20):
    step()
print((time.perf_counter() - t) / 20)
'''

CASES = {"2 threads, spinning (OpenMP default)": {"OMP_WAIT_POLICY": "ACTIVE"},
         "2 threads, passive (asdkit default)": {"OMP_WAIT_POLICY": "PASSIVE"},
         "1 thread": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}}


def main() -> None:
    base = None
    for name, env in CASES.items():
        out = subprocess.run([sys.executable, "-c", STEP], env={**os.environ, **env}, capture_output=True, text=True, check=True)
        sec = float(out.stdout.strip().splitlines()[-1])
        base = base or sec
        print(f"{name:<38} {sec:.3f} s/step  ({sec / base:.2f}x the first)")


if __name__ == "__main__":
    main()

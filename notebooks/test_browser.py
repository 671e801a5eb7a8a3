"""Notebook 02 in a real JupyterLab, driven in headless Chromium: run all, move the epoch slider with the keyboard, see the plot and the AUROC change.

Skips where Debian's ``chromium``/``chromium-driver`` or Selenium are absent (``.ci/run``
installs them). It runs after the notebooks (this file sorts after them), so the smoke
records notebook 02 reads already exist. The screenshot is kept in ``$ASDKIT_ARTIFACTS``
(default ``test-artifacts/`` in the repository).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).exists()), None)
selenium = pytest.importorskip("selenium", reason="selenium is not installed")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromium-driver are not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A JupyterLab server on a free port over a copy of notebook 02, with its own config folders."""
    from asdkit import course

    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(HERE / "02_loss_distributions.ipynb", work)
    env = dict(os.environ)
    env.setdefault("ASDKIT_RUNS", str(tmp_path / "runs"))
    env["ASDKIT_SCALE"] = "smoke"
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[var] = str(tmp_path / var.lower())
    monkeypatch.setenv("ASDKIT_RUNS", env["ASDKIT_RUNS"])
    course.prepare("smoke", names=["none-badnets", "abl-badnets", "asd-badnets"], quiet=True)  # reused when the notebooks ran first
    jupyter = Path(sys.executable).parent / "jupyter"
    subprocess.run([str(jupyter), "labextension", "disable", "--level=user", "@jupyterlab/apputils-extension:announcements"],
                   env=env, check=True, capture_output=True)
    port, token = free_port(), "asdkit-test"
    server = subprocess.Popen([str(jupyter), "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/lab/tree/02_loss_distributions.ipynb?token={token}"
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1800"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


def test_notebook_02_slider_moves_the_plot_and_the_auroc(lab, browser):
    out = Path(os.environ.get("ASDKIT_ARTIFACTS", HERE.parent / "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        before, after, value = run_all_and_move_the_slider(browser, lab)
    except Exception:
        browser.save_screenshot(str(out / "browser_notebook02_failure.png"))
        raise
    browser.save_screenshot(str(out / "browser_notebook02_after_slider.png"))
    assert value == "2", f"the epoch slider reads {value!r} after one ArrowRight"
    assert after != before, f"the AUROC label did not change ({before})"


def run_all_and_move_the_slider(browser, url):
    """Open the notebook, Run → Run All Cells, press ArrowRight on the epoch slider; the AUROC label before and after, the slider's readout."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    browser.get(url)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")))
    menu = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if e.text.strip() == "Run")
    menu.click()
    wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel") if e.text.strip() == "Run All Cells"])[0].click()

    auroc = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".asdkit-label .asdkit-auroc")))
    before_text, before_src = auroc.text, browser.find_element(By.CSS_SELECTOR, ".asdkit-plot").get_attribute("src")
    handle = browser.find_element(By.CSS_SELECTOR, ".asdkit-epoch .noUi-handle")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".asdkit-plot").get_attribute("src") != before_src)
    after_text = browser.find_element(By.CSS_SELECTOR, ".asdkit-label .asdkit-auroc").text
    return before_text, after_text, browser.find_element(By.CSS_SELECTOR, ".asdkit-epoch .widget-readout").text

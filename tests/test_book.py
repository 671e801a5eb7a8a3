"""The course as a book: ``make book`` at smoke scale executes every notebook against prepared records, links every page, and
its index opens in headless Chromium."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("myst_nb") is None, reason="the book's extra (myst-nb) is not installed")


@pytest.fixture(scope="module")
def book(smoke_course, fmnist_dir, tmp_path_factory):
    """The book built at smoke scale from the prepared smoke course."""
    tmp = tmp_path_factory.mktemp("book")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setenv("ASDKIT_RUNS", str(smoke_course))
        mp.setenv("ASDKIT_FIGURES", str(tmp / "figures"))
        spec = importlib.util.spec_from_file_location("asdkit_book_build", ROOT / "book" / "build.py")
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
        return build.build("smoke", tmp / "book", quiet=True, fetch=False)  # no test touches the network: MathJax only if cached


def test_the_book_executes_every_notebook_and_links_every_page(book):
    html = book["index"].parent
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.stem for p in (html / "notebooks").glob("*.html")) == notebooks
    assert book["broken"] == [] and book["warnings"] == []
    page = (html / "notebooks" / "05_pipd_channels.html").read_text()
    assert "scale smoke" in page and "Traceback" not in page  # executed at the book's scale, without an error
    assert "asdkit-static" in page  # the explorer's first state, drawn without a kernel
    assert (html / "api.html").exists() and "check" in (html / "api.html").read_text()
    assert (html / "results" / "classroom.html").exists() and (html / "figures" / "README.html").exists()


@pytest.mark.skipif(not (shutil.which("chromium") and (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists())),
                    reason="chromium and chromium-driver are not installed")
def test_the_built_book_opens_in_chromium(book, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(book["index"].as_uri())
        links = driver.find_elements("css selector", "a.reference.internal")
        assert "asdkit" in driver.title and len(links) >= 12
        out = Path(os.environ.get("ASDKIT_ARTIFACTS", ROOT / "test-artifacts"))
        out.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out / "book-index.png"))
        page = book["index"].parent / "notebooks" / "05_pipd_channels.html"
        assert "mathjax" in page.read_text().lower()  # the page asks MathJax to typeset its equations
        if (book["index"].parent / "_static" / "mathjax").exists():  # MathJax served by the book itself (cached from npm by make book)
            driver.get(page.as_uri())
            driver.implicitly_wait(10)
            assert driver.find_elements("css selector", "mjx-container")  # the equations typeset (no CDN needed: offline)
            driver.save_screenshot(str(out / "book-05.png"))
    finally:
        driver.quit()

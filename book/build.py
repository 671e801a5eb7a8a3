"""``make book``: the course as a static HTML book (Sphinx with MyST-NB), its notebooks executed against the prepared records.

    python book/build.py [--scale smoke|classroom|lab|paper] [--out build/book]

Stages the notebooks, the figures gallery (figures/README.md and its PNGs), the results pages and the API reference into
``OUT/src``, builds ``OUT/html`` and checks every internal link of the built pages. Prints how long the build took and
exits 1 on a broken link.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = Path(__file__).resolve().parent


def stage(src: Path) -> Path:
    """Copy what the book shows into ``src``: its own pages, the notebooks (outputs cleared, as committed), figures, results."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in ("conf.py", "index.md", "api.md"):
        shutil.copy(BOOK / name, src / name)
    (src / "notebooks").mkdir()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(nb.read_text())
        for cell in notebook["cells"]:  # a solution is folded on the page, as in Jupyter: the reader opens it
            tags = cell.get("metadata", {}).get("tags", [])
            if "solution" in tags:
                cell["metadata"]["tags"] = [*tags, "hide-cell"]
        (src / "notebooks" / nb.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    shutil.copytree(ROOT / "figures", src / "figures", ignore=shutil.ignore_patterns("*.json", "*.py"))
    shutil.copytree(ROOT / "results", src / "results", ignore=shutil.ignore_patterns("*.csv"))
    shutil.copy(ROOT / "results" / "results.csv", src / "results" / "results.csv")
    return src


MATHJAX = "mathjax@3.2.2"


def mathjax(cache: Path, *, fetch: bool = True) -> Path | None:
    """MathJax's ES5 build from the npm registry, cached in ``cache`` (so the book shows its equations offline); None without npm
    (or, with ``fetch=False``, when it is not cached yet)."""
    es5 = cache / "package" / "es5"
    if (es5 / "tex-chtml.js").exists():
        return es5
    if not fetch or shutil.which("npm") is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(["npm", "pack", MATHJAX, "--silent"], cwd=cache, capture_output=True, text=True)
    if packed.returncode:
        return None
    shutil.unpack_archive(str(cache / packed.stdout.strip().splitlines()[-1]), str(cache))
    return es5 if (es5 / "tex-chtml.js").exists() else None


HREF = re.compile(r'(?:href|src)="([^"#?]+)(?:[#?][^"]*)?"')


def broken_links(html: Path) -> list[str]:
    """Every relative link of a built page whose target file is not in the build (external links are not followed)."""
    out = []
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] == "_static":  # the theme's templates, not pages
            continue
        for target in HREF.findall(page.read_text(errors="replace")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto:, data:
            path = (page.parent / target).resolve()
            if not path.exists():
                out.append(f"{page.relative_to(html)} -> {target}")
    return out


def build(scale: str, out: Path, *, quiet: bool = False, fetch: bool = True) -> dict:
    """Stage and build the book at ``scale`` (``fetch``: MathJax from npm if not cached); (seconds, pages, warnings, broken links)."""
    start = time.perf_counter()
    src = stage(out / "src")
    html = out / "html"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's inline backend draws each figure into the page
    env["ASDKIT_SCALE"] = scale
    local = mathjax(ROOT / "build" / "mathjax", fetch=fetch)
    if local is not None:  # served from the book itself; without npm, from MathJax's CDN
        shutil.copytree(local, src / "_static" / "mathjax")
        env["ASDKIT_BOOK_MATHJAX"] = "mathjax/tex-chtml.js"
    env.setdefault("ASDKIT_RUNS", str(ROOT / "runs"))
    env.setdefault("ASDKIT_DATA", str(ROOT / "data"))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q" if quiet else "-v", "-w", str(out / "warnings.txt"), str(src), str(html)]
    done = subprocess.run(cmd, env=env, cwd=src)
    if done.returncode:
        raise SystemExit(f"sphinx-build failed ({done.returncode}); its warnings are in {out / 'warnings.txt'}")
    warnings = [w for w in (out / "warnings.txt").read_text().splitlines() if "WARNING" in w]
    return {"seconds": time.perf_counter() - start, "pages": len(list(html.rglob("*.html"))), "warnings": warnings,
            "broken": broken_links(html), "index": html / "index.html"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default=os.environ.get("ASDKIT_SCALE", "classroom"), choices=("smoke", "classroom", "lab", "paper"))
    parser.add_argument("--out", default=str(ROOT / "build" / "book"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    result = build(args.scale, Path(args.out), quiet=args.quiet)
    print(f"built {result['pages']} pages at {args.scale} scale in {result['seconds']:.0f} s: {result['index']}")
    print(f"{len(result['warnings'])} Sphinx warnings (in {Path(args.out) / 'warnings.txt'}); {len(result['broken'])} broken internal links")
    for link in result["broken"]:
        print(f"  broken: {link}")
    return 1 if result["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Render ``dvc plots show`` / ``dvc plots diff`` HTML to a PNG in headless Chromium, offline.

    dvc plots show -o plots_html && python -m review.render_plots plots_html/index.html plots.png

DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN, which a runner without internet
(ours) cannot reach, and then draws nothing. This writes a self-contained copy of the page
(``<page>.offline.html``) in which the same charts are drawn by the same libraries, bundled by
``vl-convert-python`` from PyPI, and screenshots it with Debian's ``chromium``. The PNG can go
into a pull-request comment or be looked at; ``tests/test_e2e.py`` checks that the charts drew.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CDN_SCRIPT = re.compile(r'<script src="https://cdn\.jsdelivr\.net/npm/[^"]+"></script>\s*')
INLINE_SCRIPT = re.compile(r'<script type\s*=\s*"text/javascript">(.*?)</script>', re.S)
# Chromium without the network services it would try (and fail) to reach on a closed machine.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=15000")


class RenderError(Exception):
    pass


CHART_HEIGHT = 520  # px a chart of DVC's page takes with its title and legend, with room to spare
# Once the charts drew (virtual time runs the page's promises and timers first), the page notes its
# own height on <html>, where `chromium --dump-dom` shows it: the screenshot is then cut to the
# page (a window sized for one chart per row left 56 % of a 3,320 px picture blank).
MEASURE = """<script>
setTimeout(() => { document.documentElement.dataset.height = document.documentElement.scrollHeight; }, 5000);
</script>"""


def offline_page(html: str) -> str:
    """DVC's plots page with its CDN scripts replaced by one bundled module doing the same."""
    import vl_convert

    charts = INLINE_SCRIPT.findall(html)
    if not charts:
        raise RenderError("no charts in the page: is it `dvc plots show` output?")
    page = INLINE_SCRIPT.sub("", CDN_SCRIPT.sub("", html))
    # Each chart's script in its own block: they all declare `var spec`.
    bundle = vl_convert.javascript_bundle("\n".join(f"{{\n{chart}\n}}" for chart in charts))
    return page.replace("</body>", f'<script type="module">\n{bundle}\n</script>\n{MEASURE}\n</body>')


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise RenderError("no chromium on PATH: apt-get install chromium (Debian's package)")


def page_height(page: Path, width: int, most: int) -> int:
    """The height of ``page`` drawn ``width`` px wide (``MEASURE``, in a window lower than any page,
    so that the height is the content's, not the window's); ``most`` if it says none."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},100",
             "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<html[^>]*\bdata-height="(\d+)"', result.stdout)
    return min(int(found.group(1)), most) if found else most


def screenshot(page: Path, png: Path, width: int = 1000, height: int = 1400) -> None:
    """Chromium's headless screenshot is of the window, never below it: ``height`` must hold the page."""
    png.unlink(missing_ok=True)  # an older screenshot must not pass for this one
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={png.resolve()}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not png.is_file():
        raise RenderError(f"chromium failed ({result.returncode}): {result.stderr[-1000:]}")


def render(index: Path, png: Path) -> Path:
    """Write ``index``'s offline copy beside it and its screenshot to ``png``; return the copy."""
    if not index.is_file():
        raise RenderError(f"{index}: no such file (run `dvc plots show -o {index.parent}` first)")
    html = index.read_text(encoding="utf-8")
    offline = index.with_suffix(".offline.html")
    offline.write_text(offline_page(html), encoding="utf-8")
    # One chart per row at worst (a fixed 1,400 px cut off the last charts of a longer page), cut to
    # what the page measures at that width.
    most = 200 + CHART_HEIGHT * len(INLINE_SCRIPT.findall(html))
    screenshot(offline, png, height=page_height(offline, 1000, most))
    return offline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m review.render_plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path, help="the page `dvc plots show -o DIR` wrote: DIR/index.html")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    args = parser.parse_args(argv)
    try:
        render(args.index, args.png)
    except (RenderError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"error: {exc}")
    print(args.png)


if __name__ == "__main__":
    main()

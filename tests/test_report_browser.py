"""The report page as a person sees it: headless Chromium renders index.html, every
figure must have loaded (none broken) and the screenshot must not be blank.

index.html carries no script. To ask the browser which images loaded, the test writes
a copy of the page next to it with one inline checker script that, after the load
event, writes the broken images' names into the DOM; Chromium's --dump-dom prints it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from test_report import make_bench, make_equivalence, make_study, mixlab_report

pytestmark = pytest.mark.browser

CHROMIUM = "chromium"
CHECKER = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src);
  const result = document.createElement("pre");
  result.id = "figure-check";
  result.textContent = `loaded=${images.length - broken.length} broken=${broken.join(",")}`;
  document.body.appendChild(result);
});
</script>"""


def _chromium(user_data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    executable = shutil.which(CHROMIUM)
    if executable is None:
        pytest.fail(f"{CHROMIUM} not found: install Debian's `chromium` package (`make test` does)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}",
        "--virtual-time-budget=10000",
    ]
    return subprocess.run(
        [executable, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    storage = f"sqlite:///{root / 'study.db'}"
    make_study(storage)
    out = root / "report"
    argv = ["--storage", storage, "--bench", str(make_bench(root / "bench"))]
    argv += ["--equivalence", str(make_equivalence(root / "eq.json")), "--out", str(out)]
    assert mixlab_report(argv) == 0
    return out / "index.html"


def _figures_in_browser(page: Path, profile: Path) -> tuple[int, str]:
    """(figures loaded, broken figure URLs) as Chromium sees `page`."""
    checker = page.with_name("_figure_check.html")
    checker.write_text(page.read_text().replace("</body>", CHECKER + "</body>"))
    dom = _chromium(profile, "--dump-dom", checker.as_uri()).stdout
    checker.unlink()
    result = re.search(r'<pre id="figure-check">loaded=(\d+) broken=([^<]*)</pre>', dom)
    assert result, "the checker did not run: " + dom[-500:]
    return int(result.group(1)), result.group(2)


def test_every_figure_loads(page, tmp_path):
    expected = len(re.findall(r"<img ", page.read_text()))
    assert expected == 7
    assert _figures_in_browser(page, tmp_path / "profile") == (expected, "")


def test_the_check_sees_a_broken_figure(page, tmp_path):
    copy = shutil.copytree(page.parent, tmp_path / "report")
    (copy / "fig_win_matrix.png").unlink()
    loaded, broken = _figures_in_browser(copy / page.name, tmp_path / "profile")
    assert loaded == 6 and broken.endswith("fig_win_matrix.png")


def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "page.png"
    _chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()
    )
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    # A blank (all white) or unstyled failure page has almost no variance; the report's
    # tables and figures give plenty.
    assert pixels.std() > 0.1
    non_white = (pixels < 0.95).any(axis=-1).mean()
    assert non_white > 0.05
    # the first figure (learning curves) is in the first screen: coloured pixels present
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    assert (saturation > 0.3).mean() > 0.005
    assert np.isfinite(pixels).all()

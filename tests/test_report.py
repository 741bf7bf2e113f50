"""`fsp report` and GET /v1/{dataset}/report on snapshots a real worker wrote; a real headless browser
(Debian's chromium) loads the served page and every figure."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import urllib.request

import pytest

from datasets.storj.batch import compute_storj
from datasets.ucn.batch import compute_ucn
from tests.test_serve import _serve

pytestmark = pytest.mark.integration

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def fsp_report(store, *args, prefix: str | None = None):
    env = {**os.environ, "REDIS_URL": store.redis_url,
           "FEATURE_PREFIX": store.prefix if prefix is None else prefix}
    return subprocess.run([sys.executable, "-m", "fsp", "report", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails on anything that is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def images_of(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


@pytest.fixture(scope="module")
def expected(replayed_store):
    return {"storj": compute_storj(replayed_store.storj_source), "ucn": compute_ucn(replayed_store.ucn_source)}


def test_a_report_folder_for_each_dataset_and_for_one_user(replayed_store, expected, tmp_path):
    ucn_users = expected["ucn"]["user"]
    busiest = max(ucn_users, key=lambda u: ucn_users[u]["sessions_count"])
    for dataset, extra in (("storj", []), ("ucn", []), ("ucn", ["--user", busiest])):
        folder = tmp_path / "-".join([dataset, *extra])
        done = fsp_report(replayed_store, dataset, "--out", str(folder), *extra)
        assert done.returncode == 0, done.stderr
        page = (folder / "index.html").read_text()
        figures = images_of(page)
        assert len(figures) >= 4 and sorted(figures) == sorted(p.name for p in folder.glob("*.png"))
        for name in figures:  # relative: the folder opens anywhere, offline
            width, height = png_size((folder / name).read_bytes())
            assert width > 600 and height > 200
        assert "What these figures cannot show" in page
    # the numbers the page states are the batch computation's
    sessions = sum(f["sessions_count"] for f in ucn_users.values())
    assert f"<th>closed sessions</th><td>{sessions:,}</td>" in (tmp_path / "ucn" / "index.html").read_text()
    one = (tmp_path / f"ucn---user-{busiest}" / "index.html").read_text()
    assert f"user {busiest} ({ucn_users[busiest]['username']}" in one
    assert f"<th>closed sessions</th><td>{ucn_users[busiest]['sessions_count']:,}</td>" in one
    storj_users = expected["storj"]["user"].values()
    free = sum(1 for f in storj_users if f["tier"] == "free")
    assert f"<td>{len(storj_users):,} ({free:,} free, {len(storj_users) - free:,} paid)</td>" in (
        tmp_path / "storj" / "index.html").read_text()
    assert "activity events by 2-hour week slot" in (tmp_path / "ucn" / "index.html").read_text().lower()


@pytest.mark.parametrize("args, prefix, code, line", [
    (["ucn", "--user", "999999"], None, 1, "error: no ucn user '999999' in Redis"),
    (["storj"], "empty-prefix:", 1,
     "error: no storj user snapshots in Redis (FEATURE_PREFIX='empty-prefix:'): replay a storj source first"),
    (["storj", "--user", "1"], None, 2, "error: --user is for ucn reports: storj has no per-user pictures"),
])
def test_nothing_to_draw_is_one_line(replayed_store, tmp_path, args, prefix, code, line):
    done = fsp_report(replayed_store, *args, "--out", str(tmp_path / "r"), prefix=prefix)
    assert done.returncode == code and done.stderr.strip() == line
    assert not (tmp_path / "r").exists()


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on PATH: `./run test` installs Debian's chromium when it runs as root with apt-get; "
                "else `apt-get install chromium`")


def _headless(browser: str, profile, *args) -> str:
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# Run in the page once everything has loaded: each image's src and natural width (0: it did not load).
MARK_IMAGES = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "loaded-images";
  out.textContent = JSON.stringify([...document.images].map(img => [img.getAttribute("src"), img.naturalWidth]));
  document.body.appendChild(out);
});
</script>"""


def test_the_server_serves_the_report_and_a_browser_loads_every_figure(replayed_store, tmp_path):
    browser = _browser()
    proc, base = _serve(replayed_store.redis_url, replayed_store.prefix)
    try:
        url = f"{base}/v1/ucn/report"
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            page = response.read().decode()
        figures = images_of(page)
        assert len(figures) == 6 and all(src.startswith("report/") for src in figures)
        # the page as served, from its own address, with one image that cannot load as a control
        checked = page.replace("<head>", f'<head><base href="{url}">').replace(
            "</body>", f'<img src="report/no-such-figure.png">{MARK_IMAGES}</body>')
        (tmp_path / "check.html").write_text(checked)
        dom = _headless(browser, tmp_path / "profile", "--virtual-time-budget=20000", "--dump-dom",
                        (tmp_path / "check.html").as_uri())
        loaded = dict(json.loads(re.search(r'<pre id="loaded-images">(.*?)</pre>', dom).group(1)))
        assert loaded.pop("report/no-such-figure.png") == 0  # the check tells a broken image
        assert sorted(loaded) == sorted(figures) and all(width > 600 for width in loaded.values()), loaded
        shot = tmp_path / "report.png"
        _headless(browser, tmp_path / "profile", "--window-size=1100,1500", f"--screenshot={shot}",
                  f"{base}/v1/storj/report")
        assert png_size(shot.read_bytes()) == (1100, 1500)
    finally:
        proc.terminate()
        proc.wait(10)

"""The seeds' pictures, drawn from the feature snapshots in Redis, as one HTML page with PNGs (`fsp report`).

The figures are each dataset's (Dataset.report: datasets/ucn/report.py draws what the ucn analysis drew,
datasets/storj/report.py what the storj notebook drew), each from what the snapshots carry; where a
feature is missing the page says what a figure cannot show. This module is what they share, below both
the datasets and the command line: the page
(Report, Chart), drawing helpers (matplotlib, Agg: no display), and `build_report`, for `fsp report` and
for `fsp serve` (GET /v1/{dataset}/report). What the figures plot is shaped apart, without matplotlib
(datasets/*/report_data.py, with stream.report_data).
"""
from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import datasets  # noqa: E402


class NoData(LookupError):
    """Nothing in Redis to draw: one line for the user."""


@dataclass
class Chart:
    name: str  # the PNG's file name
    title: str
    caption: str
    png: bytes


@dataclass
class Report:
    dataset: str
    subtitle: str
    charts: list[Chart]
    cannot_show: list[str]
    facts: list[tuple[str, str]]
    generated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def images(self) -> dict[str, bytes]:
        return {chart.name: chart.png for chart in self.charts}

    def html(self, image_src=lambda name: name) -> str:
        """The page; `image_src(name)` is where it finds each PNG (beside it in a folder by default)."""
        esc = html.escape
        facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.facts)
        figures = "".join(
            f'<figure id="{esc(c.name)}"><h2>{esc(c.title)}</h2>'
            f'<img src="{esc(image_src(c.name))}" alt="{esc(c.title)}"><figcaption>{esc(c.caption)}</figcaption>'
            f"</figure>" for c in self.charts)
        missing = "".join(f"<li>{esc(note)}</li>" for note in self.cannot_show)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(self.dataset)} features report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ color: #555; font-size: 0.9em; }} h2 {{ font-size: 1.1em; }}
</style></head><body>
<h1>{esc(self.dataset)} features report</h1>
<p>{esc(self.subtitle)}. Generated {esc(self.generated_at)} from the feature snapshots in Redis.</p>
<table>{facts}</table>
{figures}
<h2>What these figures cannot show</h2>
<ul>{missing}</ul>
</body></html>
"""

    def write(self, folder: str) -> list[str]:
        """index.html and the PNGs beside it: a folder that opens in any browser, offline."""
        os.makedirs(folder, exist_ok=True)
        written = []
        for chart in self.charts:
            path = os.path.join(folder, chart.name)
            with open(path, "wb") as handle:
                handle.write(chart.png)
            written.append(path)
        path = os.path.join(folder, "index.html")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.html())
        return [path, *written]


def report_datasets() -> list[str]:
    """The datasets that draw a report."""
    return [name for name in datasets.names() if datasets.get(name).report is not None]


def per_user_datasets() -> list[str]:
    """The datasets whose report can draw one user (`--user`)."""
    return [name for name in datasets.names() if datasets.get(name).report_per_user]


def build_report(r, dataset: str, prefix: str = "", user: str | None = None) -> Report:
    """Read the dataset's snapshots page by page and draw them (Dataset.report); `user`: one user's report,
    where the dataset draws one (ucn)."""
    described = datasets.get(dataset)
    if user is not None and not described.report_per_user:
        raise NoData(f"a report of one user is for {', '.join(per_user_datasets())} users "
                     f"({dataset} has no per-user pictures)")
    return described.report(r, prefix, user)


# --------------------------------------------------------------------------- drawing


def figure(width: float, height: float):
    """A figure of one plot, `width` x `height` inches, laid out to fit its labels: (figure, axes)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()

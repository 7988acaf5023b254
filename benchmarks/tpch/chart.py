"""The TPC-H bar chart: one group of bars per query, one bar per engine, log-scale seconds.

Needs matplotlib (the ``bench`` extra). A query an engine did not finish gets no bar and
a short label (``T`` timeout, ``E`` error, ``C`` crashed, ``n/a``) where its bar would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
MARKS = {"timeout": "T", "error": "E", "crashed": "C", "n/a": "n/a", "pending": "?"}


def draw(path: Path, queries: Sequence[int], seconds: dict[str, Sequence[float | None]],
         statuses: dict[str, Sequence[str]], *, title: str, timeout: float | None = None) -> Path:
    """Write a PNG of ``seconds[engine][i]`` for query ``queries[i]``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(seconds)
    values = [v for name in names for v in seconds[name] if v]
    low = min(values) if values else 0.001
    high = max(values + ([timeout] if timeout and any(s == "timeout" for n in names for s in statuses[n]) else []),
               default=1.0)
    width = 0.8 / max(len(names), 1)
    figure, axes = plt.subplots(figsize=(min(13.0, max(6.0, 0.5 * len(queries) + 2)), 5.0))
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(queries))]
        heights = [v if v else 0 for v in seconds[name]]
        axes.bar(xs, heights, width=width, label=name, color=COLORS[k % len(COLORS)])
        for x, value, status in zip(xs, seconds[name], statuses[name]):
            if not value:
                axes.text(x, low, MARKS.get(status, "?"), ha="center", va="bottom", fontsize=7,
                          color=COLORS[k % len(COLORS)], fontweight="bold")
    if values:
        axes.set_yscale("log")
        axes.set_ylim(low / 2, high * 2)
    axes.set_xticks(range(len(queries)))
    axes.set_xticklabels([f"Q{n}" for n in queries], fontsize=8)
    axes.set_ylabel("seconds (log scale)")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", which="major", alpha=0.35)
    axes.grid(axis="y", which="minor", alpha=0.12)
    axes.set_xlim(-0.6, len(queries) - 0.4)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

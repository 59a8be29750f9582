"""Charts as PNG bytes (matplotlib, Agg): grouped bars, interval (forest) plots, curves, cost against score."""
from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure

FLAG_COLOUR, ABOVE_COLOUR, PLAIN_COLOUR = "#b3261e", "#1f5fa8", "#7a8a99"


def png(fig) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _axes(width: float, height: float):
    """A figure of its own (no pyplot: nothing global to import, keep or close) and its axes."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def bar_chart(groups: Sequence[str], series: dict[str, list[dict | None]], title: str, ylabel: str = "score") -> bytes:
    """Grouped bars with 95% interval whiskers (where cells have them): one group per label, one bar per series."""
    fig, ax = _axes(max(6.0, 1.1 * len(groups) * max(1, len(series)) * 0.55 + 2), 3.6)
    width = 0.8 / max(1, len(series))
    for i, (name, cells) in enumerate(series.items()):
        xs, ys, lo, hi = [], [], [], []
        for j, cell in enumerate(cells):
            if cell and cell.get("score") is not None:
                xs.append(j + i * width)
                ys.append(cell["score"])
                lo.append(cell["score"] - cell.get("ci_low", cell["score"]))
                hi.append(cell.get("ci_high", cell["score"]) - cell["score"])
        bars = ax.bar(xs, ys, width, label=name, yerr=[lo, hi], capsize=3)
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))], groups, rotation=0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def forest_chart(rows: Sequence[tuple[str, dict | None]], title: str, xlabel: str, key: str = "diff",
                 zero: bool = True) -> bytes:
    """A point and interval per label, a line at zero, flagged rows red below zero and blue above it."""
    # A row is flagged by its own `flagged` key, or else when its interval excludes zero.
    fig, ax = _axes(7.0, 0.9 + 0.38 * max(1, len(rows)))
    for y, (label, cell) in enumerate(reversed(rows)):
        if not cell or cell.get(key) is None:
            ax.text(0, y, "n/a", va="center", fontsize=8, color="#6b6b6b")
            continue
        low, high = cell["ci_low"], cell["ci_high"]
        flagged = cell.get("flagged", low > 0 or high < 0)
        colour = PLAIN_COLOUR if not (zero and flagged) else (FLAG_COLOUR if cell[key] < 0 else ABOVE_COLOUR)
        ax.plot([low, high], [y, y], color=colour, linewidth=2)
        ax.plot([cell[key]], [y], "o", color=colour)
        ax.annotate(f"{cell[key]:+.2f}" if zero else f"{cell[key]:.2f}", (cell[key], y), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)])
    if zero:
        ax.axvline(0, color="#444", linewidth=1)
    else:
        ax.set_xlim(0, 1.05)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def curve_chart(curves: dict[str, dict[str, float]], title: str) -> bytes:
    """Worst-at-k curves: score against k, one line per series."""
    fig, ax = _axes(6.5, 3.6)
    for name, points in curves.items():
        ks = sorted(int(k) for k in points)
        ax.plot(ks, [points[str(k)] for k in ks], marker="o", label=name)
    ax.set_xlabel("k (answers drawn per case)")
    ax.set_ylabel("expected worst score")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return png(fig)


def cost_chart(points: Sequence[tuple[str, float, dict]], title: str) -> bytes:
    """Cost per 100 cases against the overall score (with its interval), one point per target."""
    fig, ax = _axes(6.5, 3.8)
    for label, usd, cell in points:
        ax.errorbar([usd], [cell["score"]], yerr=[[cell["score"] - cell["ci_low"]], [cell["ci_high"] - cell["score"]]],
                    fmt="o", capsize=3, label=label)
        ax.annotate(label, (usd, cell["score"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("US dollars per 100 cases (answers and grading)")
    ax.set_ylabel("overall score")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return png(fig)

"""Drill history and trend: reading scorecards back and rendering the trend chart.

Owns: ``iter_scorecards`` (the one place that reads ``scorecard.json`` documents from the incident
store: the folder ``<store>/<incident>/scorecard.json``, or with ``STANCH_STORE=postgresql://…``
the database's ``scorecard.json`` documents — the record, whichever machine ran the drill — read
in one query), ``HistoryRow`` (what ``stanch drill history`` shows),
``trend`` (arrow + sparkline), ``render_chart`` (matplotlib, Agg; returns the plotted points so
tests check data, not pixels), ``render_table`` (Markdown) and ``write_report``.
Must not touch: how scorecards are computed (``flows.drills.scorecard``) or written (the runner).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class HistoryRow:
    incident_id: str
    scenario: str
    started_at: datetime
    score: int
    passed: bool
    time_to_contain_s: float | None
    target_time_to_contain_s: float | None
    failed_probes: list[str]

    @classmethod
    def of(cls, card: dict[str, Any]) -> HistoryRow:
        failed = [f"{p.get('phase', '?')}:{p.get('name') or p.get('probe')}" for p in card.get("probes") or []
                  if not p.get("passed") and p.get("scored", True)]  # a baseline is not a failed probe
        ttc = card.get("time_to_contain_s")
        target = card.get("target_time_to_contain_s")
        return cls(str(card.get("incident_id", "?")), str(card.get("scenario", "?")),
                   datetime.fromisoformat(str(card["started_at"])), int(card.get("score") or 0),
                   bool(card.get("passed")), None if ttc is None else float(ttc),
                   None if target is None else float(target), failed)


def _raw_scorecards(store: Path, folder_only: bool = False) -> Iterator[bytes]:
    from flows.store import current

    remote = None if folder_only else current()
    if remote is not None:  # the database is the record (the folder is only a working copy)
        yield from remote.named("scorecard.json").values()
        return
    if not store.is_dir():
        return
    for folder in store.iterdir():
        try:
            yield (folder / "scorecard.json").read_bytes()
        except OSError:
            continue  # no scorecard: a live incident


def iter_scorecards(store: Path, scenario: str | None = None, *,
                    folder_only: bool = False) -> Iterator[dict[str, Any]]:
    """Every readable ``scorecard.json`` in the store (of ``scenario`` when given), oldest first:
    the folder ``store``, or the PostgreSQL store when ``STANCH_STORE`` names one (``folder_only``:
    always the folder, as ``--store DIR`` means). An incident without a scorecard (a live one) or
    with an unreadable one is skipped."""
    cards: list[dict[str, Any]] = []
    for raw in _raw_scorecards(store, folder_only):
        try:
            card = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(card, dict) or "started_at" not in card:
            continue
        if scenario is not None and card.get("scenario") != scenario:
            continue
        cards.append(card)
    cards.sort(key=lambda c: str(c.get("started_at")))
    return iter(cards)


def history(store: Path, scenario: str | None = None, *, folder_only: bool = False) -> list[HistoryRow]:
    return [HistoryRow.of(c) for c in iter_scorecards(store, scenario, folder_only=folder_only)]


def trend(scores: list[int]) -> str:
    """Sparkline of the scores plus an arrow comparing the last score with the one before."""
    if not scores:
        return ""
    spark = "".join(SPARK[min(len(SPARK) - 1, max(0, s) * len(SPARK) // 101)] for s in scores)
    if len(scores) < 2:
        return spark
    arrow = "↑" if scores[-1] > scores[-2] else "↓" if scores[-1] < scores[-2] else "→"
    return f"{spark} {arrow}"


def fmt_seconds(value: float | None) -> str:
    """A duration for people: ``—`` (none), ``500ms`` (under a second), ``45s``, ``5m00s``."""
    if value is None:
        return "—"
    if 0 < value < 1:
        return f"{max(1, round(value * 1000))}ms"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def render_table(rows: list[HistoryRow]) -> str:
    """Markdown table of the drills, oldest first, with the trend in the last line."""
    lines = ["| date (UTC) | scenario | incident | score | passed | time to contain | target | failed probes |",
             "|---|---|---|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.started_at:%Y-%m-%d %H:%M} | {r.scenario} | {r.incident_id} | {r.score} | "
                     f"{'yes' if r.passed else 'no'} | {fmt_seconds(r.time_to_contain_s)} | "
                     f"{fmt_seconds(r.target_time_to_contain_s)} | {', '.join(r.failed_probes) or '—'} |")
    if rows:
        lines += ["", f"Trend (score): {trend([r.score for r in rows])}"]
    return "\n".join(lines) + "\n"


def _duration_tick(value: float, _pos: object = None) -> str:
    """Axis label of a duration in seconds: ``0.5s``, ``1.4s``, ``45s``, ``5m``, ``1h30m``."""
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.2g}s"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.3g}m"
    hours, minutes = divmod(round(value / 60), 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def _targets(rows: list[HistoryRow]) -> list[dict[str, Any]]:
    """Each distinct time-to-contain target with the scenarios that have it (one line each)."""
    by: dict[float, list[str]] = {}
    for r in rows:
        if r.target_time_to_contain_s is not None:
            names = by.setdefault(r.target_time_to_contain_s, [])
            if r.scenario not in names:
                names.append(r.scenario)
    return [{"target_s": t, "scenarios": names, "label": f"target {fmt_seconds(t)} ({', '.join(names)})"}
            for t, names in sorted(by.items())]


def render_chart(rows: list[HistoryRow], out: Path, title: str = "stanch drills") -> dict[str, Any]:
    """Write a PNG trend chart and return the data plotted; the same data is embedded in the PNG's
    text metadata under ``stanch-data``: ``dates``, ``scenarios``, ``scores``, ``passed``,
    ``time_to_contain_s`` (None: never contained), per drill, oldest first; ``series`` (per
    scenario: the indexes of its drills, in the order drawn); ``targets`` (each distinct target
    with its scenarios and label); ``not_contained`` (dates of drills that never contained) and
    ``layout``.

    Made for a person: one series per scenario (its own colour and line, never joined to another
    scenario's points), score on top (filled marker passed, red X failed, each point labelled),
    time to contain below, each point labelled with its duration, one dashed line per distinct
    target (labelled with its scenarios); a drill that never contained is not dropped: an ``x`` at
    the top of the time plot, annotated "not contained", and its scenario's time line is broken
    there; a log scale when the times and targets differ by more than 20x (a 1.4 s sandbox drill
    against a 5-minute target); the x axis spans the drills (a day around a single drill), its
    ticks are dates (``2026-11-02`` with the time under it, seconds when the span is short, never
    a bare ``30``); the legends outside the plots, so no point is hidden. ``layout`` says what was
    drawn (x range and tick labels, y scale, where each time point sits in its axes, whether a
    legend covers a point), so tests check the chart's readability without looking at pixels."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import timedelta

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    targets = _targets(rows)
    data: dict[str, Any] = {
        "dates": [r.started_at.isoformat() for r in rows],
        "scenarios": [r.scenario for r in rows],
        "scores": [r.score for r in rows],
        "passed": [r.passed for r in rows],
        "time_to_contain_s": [r.time_to_contain_s for r in rows],
        "series": {name: [i for i, r in enumerate(rows) if r.scenario == name] for name in scenarios},
        "targets": targets,
        "not_contained": [r.started_at.isoformat() for r in rows if r.time_to_contain_s is None],
    }
    dates = [r.started_at for r in rows]
    ttc = [(r.started_at, r.time_to_contain_s) for r in rows if r.time_to_contain_s is not None]
    colours = plt.get_cmap("tab10")
    fig, (ax_score, ax_ttc) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    try:
        values = [v for _, v in ttc] + [t["target_s"] for t in targets]
        positive = [v for v in values if v > 0]
        log = len(positive) == len(values) and bool(positive) and max(positive) / min(positive) > 20
        if log:
            low, top = min(positive) / 3, max(positive) * 3
        else:
            low, top = 0.0, (max(values) * 1.25 if values and max(values) > 0 else 1.0)
        top_mark = top / 1.6 if log else top * 0.92  # where a never-contained drill is marked
        for k, name in enumerate(scenarios):
            colour = colours(k % 10)
            mine = [rows[i] for i in data["series"][name]]
            ax_score.plot([r.started_at for r in mine], [r.score for r in mine], color=colour, zorder=1,
                          label=name)
            # a drill that never contained breaks its scenario's time line (NaN), it is not bridged
            ax_ttc.plot([r.started_at for r in mine],
                        [r.time_to_contain_s if r.time_to_contain_s is not None else float("nan") for r in mine],
                        marker="o", color=colour, label=f"{name}: time to contain")
        ax_score.scatter([d for d, r in zip(dates, rows, strict=True) if r.passed],
                         [r.score for r in rows if r.passed], color="tab:green", zorder=2, label="passed")
        ax_score.scatter([d for d, r in zip(dates, rows, strict=True) if not r.passed],
                         [r.score for r in rows if not r.passed], color="tab:red", marker="X", s=60, zorder=2,
                         label="failed")
        for d, r in zip(dates, rows, strict=True):
            ax_score.annotate(str(r.score), (d, r.score), textcoords="offset points", xytext=(0, 7), ha="center",
                              fontsize=8)
        ax_score.set_ylim(0, 112)
        ax_score.set_ylabel("score (0-100)")
        ax_score.set_title(title)
        ax_score.grid(True, alpha=0.3)
        for d, v in ttc:
            ax_ttc.annotate(fmt_seconds(v) if v >= 10 else f"{v:.2g}s", (d, v), textcoords="offset points",
                            xytext=(0, 7), ha="center", fontsize=8)
        missing = [r.started_at for r in rows if r.time_to_contain_s is None]
        if missing:
            ax_ttc.scatter(missing, [top_mark] * len(missing), marker="x", color="tab:red", s=60, zorder=3,
                           label="not contained")
            for d in missing:
                ax_ttc.annotate("not contained", (d, top_mark), textcoords="offset points", xytext=(0, -12),
                                ha="center", fontsize=7, color="tab:red")
        for k, t in enumerate(targets):
            ax_ttc.axhline(t["target_s"], color="tab:red", linestyle=("--", ":", "-.")[k % 3], alpha=0.8,
                           label=t["label"])
        if log:
            ax_ttc.set_yscale("log")
        ax_ttc.set_ylim(low, top)
        ax_ttc.yaxis.set_major_formatter(FuncFormatter(_duration_tick))
        ax_ttc.set_ylabel("time to contain" + (" (log scale)" if log else ""))
        ax_ttc.set_xlabel("drill date (UTC)")
        ax_ttc.grid(True, alpha=0.3)
        short = False
        if dates:  # the drills' own span plus a margin; a single drill: one day around it (not years)
            lo, hi = min(dates), max(dates)
            pad = max((hi - lo) * 0.08, timedelta(minutes=1)) if hi > lo else timedelta(hours=12)
            ax_ttc.set_xlim(lo - pad, hi + pad)
            short = hi - lo + 2 * pad < timedelta(hours=2)
        ax_ttc.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
        # always the date, the time under it (seconds only when the drills are minutes apart)
        ax_ttc.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d\n%H:%M:%S" if short else "%Y-%m-%d\n%H:%M"))
        legends = [ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
                   for ax in (ax_score, ax_ttc)]
        fig.tight_layout()
        fig.canvas.draw()
        data["layout"] = _layout(fig, ax_ttc, [ax_score, ax_ttc], legends, ttc, log)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100, metadata={"stanch-data": json.dumps(data)})
    finally:
        plt.close(fig)
    return data


def _layout(fig: Any, ax_ttc: Any, axes: list[Any], legends: list[Any],
            ttc: list[tuple[datetime, float]], log: bool) -> dict[str, Any]:
    """What a reader sees: the x range (ISO dates) and its tick labels, the time axis' scale, each
    time point's height in its axes (0 bottom .. 1 top) and whether any legend box covers any
    plotted point."""
    import math

    import matplotlib.dates as mdates

    renderer = fig.canvas.get_renderer()
    boxes = [legend.get_window_extent(renderer) for legend in legends]
    points = []
    for ax in axes:
        for line in ax.get_lines():
            xs, ys = line.get_xdata(), line.get_ydata()
            if len(xs) and not isinstance(xs[0], float | int):
                points += [tuple(p) for p in ax.transData.transform(
                    [(x, y) for x, y in zip(mdates.date2num(list(xs)), ys, strict=True) if not math.isnan(y)])]
        for coll in ax.collections:  # scatter markers (passed, failed, not contained)
            points += [tuple(p) for p in ax.transData.transform(coll.get_offsets())]
    covered = any(box.contains(x, y) for box in boxes for x, y in points)
    lo, hi = ax_ttc.get_xlim()
    heights = [round(float(ax_ttc.transLimits.transform(ax_ttc.transScale.transform((mdates.date2num(d), v)))[1]), 3)
               for d, v in ttc]
    return {"x_from": mdates.num2date(lo).isoformat(), "x_to": mdates.num2date(hi).isoformat(),
            "x_tick_labels": [t.get_text() for t in ax_ttc.get_xticklabels() if t.get_text()],
            "time_scale": "log" if log else "linear", "time_points_height": heights,
            "legend_covers_a_point": covered}


def write_report(rows: list[HistoryRow], out_dir: Path,
                 scenario: str | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """``trend.png`` and ``history.md`` in ``out_dir``; returns their paths and the plotted data."""
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"drill trend: {scenario}" if scenario else "drill trend: all scenarios"
    chart = out_dir / "trend.png"
    data = render_chart(rows, chart, title)
    table = out_dir / "history.md"
    table.write_text(f"# {title}\n\n![trend](trend.png)\n\n{render_table(rows)}", encoding="utf-8")
    return chart, table, data


def publish_artifact(markdown: str, chart: Path, scenario: str | None) -> str | None:
    """Attach the history table and the chart (inline PNG) as a Prefect markdown artifact when
    PREFECT_API_URL is set; the artifact key, or None when no Prefect API is configured."""
    import base64

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    image = base64.b64encode(chart.read_bytes()).decode("ascii")
    markdown = markdown.replace("![trend](trend.png)", f"![trend](data:image/png;base64,{image})")
    key = "drill-trend-" + "".join(ch if ch.isalnum() else "-" for ch in (scenario or "all")).lower()
    # through the client: `drill report` runs outside any flow run, where prefect.artifacts'
    # helpers warn that creating an artifact there is deprecated (FutureWarning)
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(type="markdown", key=key, data=markdown,
                                              description="stanch drill history and trend"))
    return key

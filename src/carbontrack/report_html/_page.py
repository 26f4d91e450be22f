"""The HTML page: one self-contained file (inline CSS and SVG, no script, nothing fetched)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from carbontrack._version import __version__
from carbontrack.model import J_PER_KWH, component_of
from carbontrack.report_html._data import PROVENANCE, RunDetail
from carbontrack.report_html._svg import (
    co2_per_run_chart,
    cumulative_energy_chart,
    energy_per_epoch_chart,
    energy_unit,
    fmt,
    power_chart,
    time_unit,
)

__all__ = ["render_page"]

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies); the last one
# flips with the theme so that it stays visible on the background.
CSS = (
    """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1b1f; --muted: #5b5e66;
  --line: #d5d7dc; --panel: #f5f6f8; --warn: #8a4b00; --warnbg: #fff4e0;
  --s0: #0072b2; --s1: #e69f00; --s2: #009e73; --s3: #cc79a7; --s4: #56b4e9;
  --s5: #d55e00; --s6: #b8a200; --s7: #000000; --band: rgba(230, 159, 0, 0.25); }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15171b; --fg: #e8e9ec; --muted: #a3a7b0; --line: #3a3e46; --panel: #1f2228;
    --warn: #ffcc80; --warnbg: #3a2a10; --s0: #4aa8e8; --s7: #e8e9ec;
    --band: rgba(230, 159, 0, 0.3); }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 980px; padding: 1.5rem; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.3rem; margin-top: 2.5rem;
  border-bottom: 1px solid var(--line); padding-bottom: .25rem; } h3 { font-size: 1.05rem; }
.muted, .legend, figcaption { color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.badge { display: inline-block; font-size: .8rem; font-weight: 600; padding: .05rem .5rem;
  border-radius: .75rem; border: 1px solid currentColor; margin-left: .4rem;
  vertical-align: middle; }
.badge.killed, .badge.estimated { color: var(--warn); }
.badge.carbontracker { color: var(--s0); }
.note { background: var(--warnbg); color: var(--fg); border-left: 4px solid var(--warn);
  padding: .4rem .75rem; margin: .5rem 0; }
figure { margin: 1rem 0; background: var(--panel); border-radius: 6px; padding: .5rem; }
figcaption { font-size: .85rem; padding: 0 .25rem .25rem; }
svg.chart { width: 100%; height: auto; display: block; font-size: 11px; }
svg.chart text { fill: var(--fg); } svg.chart .label { fill: var(--muted); }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart .frame, svg.chart .tick { stroke: var(--muted); stroke-width: 1; }
svg.chart .line { fill: none; stroke-width: 1.75; stroke-linejoin: round; }
svg.chart .bar { fill: var(--s0); } svg.chart .bar.incomplete { fill: var(--s1); }
svg.chart .bar.carbontracker { fill: var(--s2); }
svg.chart .band { fill: var(--band); stroke: none; }
svg.chart .predicted { stroke: var(--s5); stroke-width: 2; stroke-dasharray: 6 4; }
svg.chart .predicted-point { fill: var(--s5); }
svg.chart .whisker { stroke: var(--s5); stroke-width: 2; }
svg.chart .unknown { fill: var(--muted); font-style: italic; }
"""
    + "".join(
        f"svg.chart .s{i} {{ stroke: var(--s{i}); }} .key.s{i} {{ background: var(--s{i}); }}\n"
        for i in range(8)
    )
    + """
.legend { list-style: none; padding: 0 .25rem; margin: .25rem 0 0; display: flex;
  flex-wrap: wrap; gap: .25rem 1rem; font-size: .85rem; }
.key { display: inline-block; width: 1.2em; height: .35em; margin-right: .35em;
  vertical-align: middle; border-radius: 2px; }
.key.predicted { background: var(--s5); } .key.band { background: var(--band); height: .8em; }
details { margin: .25rem 0 1rem; } summary { cursor: pointer; color: var(--muted); }
.scroll { max-height: 24rem; overflow: auto; }
footer { margin-top: 3rem; font-size: .85rem; color: var(--muted); }
@media print {
  :root { --bg: #ffffff; --fg: #000000; --muted: #444444; --panel: #ffffff; --line: #bbbbbb;
    --s0: #0072b2; --s7: #000000; }
  body { max-width: none; padding: 0; font-size: 11pt; }
  figure, table, dl.facts { break-inside: avoid; }
  h2 { break-before: page; } h2.first { break-before: auto; }
  .scroll { max-height: none; overflow: visible; }
}
"""
)


def _kwh(joules: float) -> str:
    return fmt(joules / J_PER_KWH)


def _when(ts: float | None) -> str:
    if ts is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _label(run: RunDetail) -> str:
    s = run.summary
    return f"{s.run_id[:20]} ({s.tool})" if s.tool != "carbontrack" else s.run_id[:20]


def _badges(run: RunDetail) -> str:
    out = []
    if run.status == "killed":
        out.append('<span class="badge killed">killed: no final report</span>')
    if run.status == "carbontracker":
        out.append('<span class="badge carbontracker">carbontracker log</span>')
    if run.status == "job":
        out.append('<span class="badge carbontracker">multi-process job</span>')
    if run.summary.estimated:
        out.append('<span class="badge estimated">estimated</span>')
    return "".join(out)


def _anchor(run: RunDetail, index: int) -> str:
    return f"run-{index}"


def _runs_table(runs: Sequence[RunDetail]) -> str:
    rows = []
    for i, run in enumerate(runs):
        s = run.summary
        epochs = "" if s.epochs is None else str(s.epochs)
        if s.epochs_planned and s.epochs is not None:
            epochs = f"{s.epochs} / {s.epochs_planned}"
        status = {
            "complete": "complete",
            "killed": "killed (no final report)",
            "carbontracker": "carbontracker log" + ("" if s.complete else ", incomplete"),
            "job": "multi-process job" + ("" if s.complete else ", partial"),
        }[run.status]
        rows.append(
            f'<tr><td><a href="#{_anchor(run, i)}">{escape(s.run_id[:28])}</a></td>'
            f"<td>{escape(s.tool)}</td><td>{escape(status)}</td><td>{_when(s.started_at)}</td>"
            f'<td class="num">{_duration(s.duration_s)}</td><td class="num">{epochs}</td>'
            f'<td class="num">{fmt(s.energy_kwh)}</td>'
            f'<td class="num">{fmt(s.facility_energy_kwh)}</td>'
            f'<td class="num">{"unknown" if s.co2eq_g is None else fmt(s.co2eq_g)}</td>'
            f'<td class="num">'
            f"{'' if s.predicted_co2eq_g is None else fmt(s.predicted_co2eq_g)}</td>"
            f"<td>{'estimated. ' if s.estimated else ''}{escape(s.note)}</td></tr>"
        )
    return (
        "<table><caption>Runs</caption><thead><tr><th>run</th><th>tool</th><th>status</th>"
        '<th>started</th><th class="num">duration</th><th class="num">epochs</th>'
        '<th class="num">energy (kWh)</th><th class="num">facility (kWh)</th>'
        '<th class="num">CO2eq (g)</th><th class="num">predicted CO2eq (g)</th>'
        f"<th>notes</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _summary(runs: Sequence[RunDetail]) -> str:
    known = [r.summary.co2eq_g for r in runs if r.summary.co2eq_g is not None]
    total = {
        "runs": len(runs),
        "duration_s": sum(r.summary.duration_s for r in runs),
        "energy_kwh": sum(r.summary.energy_kwh for r in runs),
        "facility_energy_kwh": sum(r.summary.facility_energy_kwh for r in runs),
        "co2eq_g": sum(known),
        "runs_without_co2eq": len(runs) - len(known),
        "incomplete_runs": sum(not r.summary.complete for r in runs),
        "estimated_runs": sum(r.summary.estimated for r in runs),
    }
    items = [
        ("runs", str(total["runs"])),
        ("time measured", _duration(total["duration_s"])),
        ("device energy", f"{fmt(total['energy_kwh'])} kWh"),
        ("facility energy (with PUE)", f"{fmt(total['facility_energy_kwh'])} kWh"),
        ("CO2eq", f"{fmt(total['co2eq_g'])} g"),
    ]
    if total["runs_without_co2eq"]:
        items.append(
            ("left out of CO2eq", f"{total['runs_without_co2eq']} run(s) whose log does not say")
        )
    if total["incomplete_runs"]:
        items.append(("incomplete runs", str(total["incomplete_runs"])))
    if total["estimated_runs"]:
        items.append(("runs with estimates", str(total["estimated_runs"])))
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl class="facts">{facts}</dl>'


def _power_section(run: RunDetail) -> str:
    if not run.steps or not run.devices:
        return '<p class="muted">No power figures: the log has no checkpoint or report.</p>'
    devices = [d for d in run.devices if any(d.key in s.watts for s in run.steps)]
    labels = [f"{d.name} ({d.kind}, {d.backend}, {d.provenance})" for d in devices]
    steps = [(s.start_s, s.end_s, [s.watts.get(d.key, 0.0) for d in devices]) for s in run.steps]
    chart = power_chart(f"Power over time per device, run {run.summary.run_id}", steps, labels)
    div, unit = time_unit(steps[-1][1])
    head = "".join(f'<th class="num">{escape(d.name)} (W)</th>' for d in devices)
    rows = "".join(
        f'<tr><td class="num">{fmt(t0 / div)}</td><td class="num">{fmt(t1 / div)}</td>'
        + "".join(f'<td class="num">{fmt(w)}</td>' for w in watts)
        + "</tr>"
        for t0, t1, watts in steps
    )
    few = len(steps) == 1
    caption = (
        "Mean power of each device between successive checkpoints of the run log (and its "
        "final report)."
        + (
            " This run has no checkpoint before its end, so one mean over the whole run is shown."
            if few
            else ""
        )
    )
    return (
        f"<h3>Power over time per device</h3><figure>{chart}"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        f"<details><summary>Power figures as a table ({len(steps)} intervals)</summary>"
        f'<div class="scroll"><table><thead><tr><th class="num">from ({unit})</th>'
        f'<th class="num">to ({unit})</th>{head}</tr></thead><tbody>{rows}</tbody></table>'
        "</div></details>"
    )


def _epochs_section(run: RunDetail) -> str:
    if not run.epochs:
        return ""
    prediction = run.prediction
    name = run.summary.run_id
    bars = energy_per_epoch_chart(f"Energy per epoch, run {name}", run.epochs)
    cumulative = cumulative_energy_chart(
        f"Energy over the epochs and the predicted total, run {name}", run.epochs, prediction
    )
    div, unit = energy_unit(max(e.energy_j for e in run.epochs))
    rows = "".join(
        f'<tr><td class="num">{e.index}</td><td class="num">{_duration(e.duration_s)}</td>'
        f'<td class="num">{fmt(e.energy_j / div)}</td><td class="num">{fmt(e.co2eq_g)}</td></tr>'
        for e in run.epochs
    )
    said = ""
    if prediction is not None:
        kwh = prediction.energy_j / J_PER_KWH
        interval = ""
        if prediction.co2eq_g_low is not None and prediction.co2eq_g_high is not None:
            level = f"{prediction.level:.0%} " if prediction.level is not None else ""
            interval = (
                f" ({level}prediction interval {fmt(prediction.co2eq_g_low)} to "
                f"{fmt(prediction.co2eq_g_high)} g)"
            )
        said = (
            f"<p>Prediction after epoch {prediction.after_epoch} for all {prediction.epochs} "
            f"epochs: {_duration(prediction.duration_s)}, {fmt(kwh)} kWh of device energy, "
            f"{fmt(prediction.co2eq_g)} gCO2eq{escape(interval)}.</p>"
        )
    return (
        f"<h3>Energy per epoch</h3><figure>{bars}<figcaption>Device energy (IT, before PUE) "
        f"of each epoch.</figcaption></figure><figure>{cumulative}<figcaption>Energy summed "
        "over the epochs measured; the dashed line runs from the epoch the latest prediction "
        "was made after to the predicted total, the shaded fan and whisker show its prediction "
        f"interval.</figcaption></figure>{said}"
        f"<details><summary>Epochs as a table ({len(run.epochs)} epochs)</summary>"
        '<div class="scroll"><table><thead><tr><th class="num">epoch</th>'
        f'<th class="num">duration</th><th class="num">energy ({unit})</th>'
        f'<th class="num">CO2eq (g)</th></tr></thead><tbody>{rows}</tbody></table></div>'
        "</details>"
    )


def _devices_section(run: RunDetail) -> str:
    if not run.devices:
        return ""
    rows = "".join(
        f"<tr><td>{escape(d.name)}</td><td>{escape(d.id)}</td><td>{escape(d.kind)} "
        f"({escape(component_of(d.kind))})</td><td>{escape(d.backend)}</td>"
        f"<td>{escape(d.provenance)} ({escape(d.method)})</td>"
        f'<td class="num">{"" if d.energy_j is None else fmt(d.energy_j / 3600.0)}</td></tr>'
        for d in run.devices
    )
    unavailable = ""
    if run.report is not None and run.report.unavailable:
        items = "".join(
            f"<li>{escape(u.kind)} ({escape(u.backend)}): {escape(u.reason)}. "
            f"Fix: {escape(u.fix)}</li>"
            for u in run.report.unavailable
        )
        unavailable = f"<p>Found but not measured:</p><ul>{items}</ul>"
    return (
        "<h3>Devices</h3><table><caption>Devices and how each figure was obtained "
        "(measured: a hardware energy counter; sampled: power readings integrated over time; "
        "estimated: a model, not a measurement)</caption><thead><tr><th>device</th><th>id</th>"
        "<th>kind (component)</th><th>backend</th><th>provenance</th>"
        f'<th class="num">energy (Wh)</th></tr></thead><tbody>{rows}</tbody></table>'
        f"{unavailable}"
    )


def _facts(run: RunDetail) -> str:
    s = run.summary
    items = [
        ("started", _when(s.started_at)),
        ("duration", _duration(s.duration_s)),
        ("device energy", f"{fmt(s.energy_kwh)} kWh"),
        ("facility energy", f"{fmt(s.facility_energy_kwh)} kWh"),
        ("CO2eq", "unknown (not in the log)" if s.co2eq_g is None else f"{fmt(s.co2eq_g)} g"),
    ]
    r = run.report
    if r is not None:
        i = r.intensity
        where = "/".join(p for p in (r.location.country, r.location.region) if p) or "unknown"
        items += [
            ("PUE", fmt(r.pue)),
            ("carbon intensity", f"{fmt(i.g_per_kwh)} gCO2eq/kWh ({i.source})"),
            ("location", where + (" (world average used)" if i.is_fallback else "")),
        ]
    if s.epochs is not None:
        planned = f" of {s.epochs_planned}" if s.epochs_planned else ""
        items.append(("epochs", f"{s.epochs}{planned}"))
    items.append(("log file", s.path))
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
        + "</dl>"
    )


def _run_section(run: RunDetail, index: int) -> str:
    s = run.summary
    anchor = _anchor(run, index)
    first = ' class="first"' if index == 0 else ""
    parts = [
        f'<section id="{anchor}" aria-labelledby="{anchor}-h"><h2 id="{anchor}-h"{first}>'
        f"Run {escape(s.run_id)}{_badges(run)}</h2>"
    ]
    if run.status == "killed":
        parts.append(
            '<p class="note">This run ended without its final report (killed?). Its figures '
            f"come from what the log holds: {escape(s.note)}. They are a lower bound.</p>"
        )
    elif run.status == "carbontracker":
        parts.append(
            '<p class="note">A carbontracker log: only its totals are known (its energy '
            f"includes carbontracker's PUE). {escape(s.note)}.</p>"
        )
    elif run.status == "job":
        parts.append(
            '<p class="note">A multi-process job: its ranks\' logs are counted once, as in '
            "<code>carbontrack report</code>; its totals are shown, not its charts (see "
            f"<code>carbontrack report --by rank</code>). {escape(s.note)}</p>"
        )
    parts.append(_facts(run))
    if run.status not in ("carbontracker", "job"):
        parts.append(_power_section(run))
        parts.append(_epochs_section(run))
        parts.append(_devices_section(run))
    if run.report is not None:
        parts.append(f"<h3>Methodology</h3><p>{escape(run.report.methodology())}</p>")
    if run.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in run.warnings)
        parts.append(f"<h3>Warnings</h3><ul>{items}</ul>")
    parts.append("</section>")
    return "".join(parts)


def render_page(runs: Sequence[RunDetail], problems: Sequence[str], *, title: str = "") -> str:
    """The whole page for ``runs``; ``problems`` (unreadable lines, files) are listed too."""
    title = title or (
        f"carbontrack report: {runs[0].summary.run_id}"
        if len(runs) == 1
        else f"carbontrack report: {len(runs)} runs"
    )
    body = [
        f'<header><h1>{escape(title)}</h1><p class="muted">Made by carbontrack '
        f"{escape(__version__)} on {_when(time.time())} from {len(runs)} run log(s). "
        "Everything is in this file: no script, no network.</p></header>",
        '<main><h2 class="first">Summary</h2>',
        _summary(runs),
        _runs_table(runs),
    ]
    if len(runs) >= 2:
        bars = [
            (
                _label(r),
                r.summary.co2eq_g,
                r.summary.predicted_co2eq_g,
                "carbontracker"
                if r.status == "carbontracker"
                else ("incomplete" if not r.summary.complete else ""),
            )
            for r in runs
        ]
        chart = co2_per_run_chart("CO2eq per run", bars)
        body.append(
            f"<figure>{chart}<figcaption>CO2eq of each run (incomplete runs in orange, "
            "carbontracker logs in green); a dashed tick marks the run's first prediction."
            "</figcaption></figure>"
        )
    if problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in problems)
        body.append(f"<h3>Problems reading the logs</h3><ul>{items}</ul>")
    body.extend(_run_section(r, i) for i, r in enumerate(runs))
    provenance = ", ".join(f"{v} ({k})" for k, v in PROVENANCE.items())
    body.append(
        "</main><footer><h2>How these figures were made</h2><p>carbontrack reads energy "
        f"counters where the hardware has them and labels every figure: {escape(provenance)}. "
        "Device energies are summed (never averaged), multiplied by the power usage "
        "effectiveness (PUE) into facility energy, and turned into CO2eq with the carbon "
        "intensity named for each run. Power over time is the energy between checkpoints "
        "divided by their time. Predictions follow Anthony et al. (2020, Carbontracker) with a "
        "Student t prediction interval.</p></footer>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )

# ruff: noqa: E501 - inline SVG/HTML markup reads better unbroken
"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network).

A scatter of quality against each footprint axis (latency ratio, size, RAM): front points
filled, dominated points grey, infeasible points red crosses, the chosen point ringed, the
original a black square; the 2-D front of each plot joined by a step line. Then the front as a
table and the per-layer decisions of the chosen model.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Callable

from modelcrunch.search.frontier import Frontier, Point

W, H, PAD = 420, 300, 48
COLOURS = {"frontier": "#1f6feb", "dominated": "#9aa0a6", "infeasible": "#d1242f"}
AXES: tuple[tuple[str, str, Callable[[Point], float | None]], ...] = (
    ("latency", "latency vs original (x)", lambda p: p.figures.latency_ratio),
    ("size", "size (MB)", lambda p: p.figures.size_bytes / 1e6),
    ("ram", "session RAM (MB)", lambda p: p.figures.ram_bytes / 1e6 if p.figures.ram_bytes else None),
)


def _e(text: object) -> str:
    return _html.escape(str(text))


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.06
    lo, hi = lo - pad, hi + pad
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi - lo < 1e-12:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _front_2d(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten in both (x lower, quality higher), by x."""
    out, best_q = [], -math.inf
    for x, q in sorted(pts, key=lambda t: (t[0], -t[1])):
        if q > best_q:
            out.append((x, q))
            best_q = q
    return out


def plot(frontier: Frontier, name: str, label: str, get: Callable[[Point], float | None]) -> str:
    pts = [(p, v) for p in frontier.points if (v := get(p)) is not None and math.isfinite(v)]
    if not pts:
        return f'<p class="muted">no {label} figures</p>'
    xs = [v for _, v in pts]
    qs = [p.figures.quality for p, _ in pts]
    sx = _scale(min(xs), max(xs), PAD, W - 12)
    sy = _scale(min(qs), max(qs), H - PAD + 8, 12)
    parts = [
        f'<svg class="plot" data-axis="{name}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
    ]
    parts.append(
        f'<rect x="{PAD}" y="6" width="{W - PAD - 6}" height="{H - PAD + 8}" fill="#fafbfc" stroke="#d0d7de"/>'
    )
    for t in _ticks(min(xs), max(xs)):
        parts.append(
            f'<text x="{sx(t):.1f}" y="{H - PAD + 30}" class="tick" text-anchor="middle">{t:.3g}</text>'
        )
    for t in _ticks(min(qs), max(qs)):
        parts.append(f'<text x="{PAD - 4}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{t:.4f}</text>')
    parts.append(
        f'<text x="{(W + PAD) / 2:.0f}" y="{H - 4}" class="axis" text-anchor="middle">{_e(label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{H / 2:.0f}" class="axis" transform="rotate(-90 12 {H / 2:.0f})" text-anchor="middle">quality</text>'
    )
    line = _front_2d([(v, p.figures.quality) for p, v in pts])
    if len(line) > 1:
        d = f"M{sx(line[0][0]):.1f},{sy(line[0][1]):.1f}"
        for (_, q0), (x1, q1) in zip(line, line[1:], strict=False):
            d += f" L{sx(x1):.1f},{sy(q0):.1f} L{sx(x1):.1f},{sy(q1):.1f}"
        parts.append(
            f'<path d="{d}" fill="none" stroke="{COLOURS["frontier"]}" stroke-width="1.2" stroke-dasharray="4 3"/>'
        )
    order = {"dominated": 0, "infeasible": 1, "frontier": 2}
    for p, v in sorted(pts, key=lambda t: order[t[0].status]):
        x, y = sx(v), sy(p.figures.quality)
        tip = f"<title>#{p.number} {_e(p.summary)}: quality {p.figures.quality:.4f}, {_e(label)} {v:.3g} ({p.status})</title>"
        if not p.settings:
            parts.append(
                f'<rect class="pt original" x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="#000">{tip}</rect>'
            )
        elif p.status == "infeasible":
            parts.append(
                f'<path class="pt infeasible" d="M{x - 4:.1f},{y - 4:.1f} L{x + 4:.1f},{y + 4:.1f} M{x - 4:.1f},{y + 4:.1f} '
                f'L{x + 4:.1f},{y - 4:.1f}" stroke="{COLOURS["infeasible"]}" stroke-width="2">{tip}</path>'
            )
        else:
            parts.append(
                f'<circle class="pt {p.status}" cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{COLOURS[p.status]}">{tip}</circle>'
            )
        if frontier.best is not None and p.number == frontier.best.number:
            parts.append(
                f'<circle class="best" cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="#1a7f37" stroke-width="2.5"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    items = [
        f'<span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{COLOURS["frontier"]}"/></svg> front</span>',
        f'<span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{COLOURS["dominated"]}"/></svg> dominated</span>',
        f'<span><svg width="12" height="12"><path d="M2,2 L10,10 M2,10 L10,2" stroke="{COLOURS["infeasible"]}" stroke-width="2"/></svg> infeasible</span>',
        '<span><svg width="12" height="12"><rect x="1" y="1" width="10" height="10"/></svg> original</span>',
        '<span><svg width="14" height="14"><circle cx="7" cy="7" r="6" fill="none" stroke="#1a7f37" stroke-width="2"/></svg> chosen (best.onnx)</span>',
    ]
    return '<p class="legend">' + " ".join(items) + "</p>"


def _row(p: Point) -> str:
    f = p.figures
    ram = f"{f.ram_bytes / 1e6:.1f}" if f.ram_bytes else "–"
    return (
        f'<tr class="{p.status}"><td>#{p.number}</td><td>{_e(p.summary)}</td><td>{f.quality:.4f}</td>'
        f"<td>{'yes' if f.passed else 'no'}</td><td>{f.latency_ratio:.2f}x</td><td>{f.latency_ms:.3f}</td>"
        f"<td>{f.size_bytes / 1e6:.3f}</td><td>{ram}</td><td>{_e(p.status)}</td><td>{_e(p.phase)}</td></tr>"
    )


def _decisions(p: Point) -> str:
    layers: dict[str, dict[str, str]] = {}
    for name, value in p.settings.items():
        kind, _, target = name.partition(":")
        row = layers.setdefault(target or "(whole model)", {})
        if kind == "prune":
            row["prune"] = f"{float(value):.0%} of channels"
        elif kind == "rank":
            row["factorize"] = f"energy {float(value):g}"
        elif kind == "float":
            row["precision"] = "kept float"
        elif kind == "precision":
            row["precision"] = str(value)
    if not layers:
        return "<p>The chosen model is the original (no change met the target with a lower footprint).</p>"
    rows = "".join(
        f"<tr><td><code>{_e(k)}</code></td><td>{_e(v.get('prune', '–'))}</td><td>{_e(v.get('factorize', '–'))}</td>"
        f"<td>{_e(v.get('precision', '–'))}</td></tr>"
        for k, v in sorted(layers.items())
    )
    return (
        '<table id="decisions"><tr><th>layer</th><th>prune</th><th>factorize</th><th>precision</th></tr>'
        f'{rows}</table><p class="muted">Layers not listed are unchanged.</p>'
    )


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1400px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}.muted{color:#656d76}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{background:#fff}
.tick{font-size:10px;fill:#656d76}.axis{font-size:12px;fill:#1f2328}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f6f8fa}tr.infeasible td{color:#d1242f}tr.dominated td{color:#656d76}
.legend span{margin-right:14px}.legend svg{vertical-align:middle}"""


def render(frontier: Frontier) -> str:
    best = frontier.best
    plots = "".join(f"<figure>{plot(frontier, n, label, get)}</figure>" for n, label, get in AXES)
    summary = (
        f"<p><b>Chosen:</b> #{best.number} {_e(best.summary)} — quality {best.figures.quality:.4f}, "
        f"{best.figures.latency_ratio:.2f}x latency, {best.figures.size_bytes / 1e6:.3f} MB. {_e(frontier.reason)}.</p>"
        if best
        else f'<p class="infeasible"><b>No point meets the constraints.</b> {_e(frontier.reason)}.</p>'
    )
    c = frontier.constraints
    header = "<tr><th>trial</th><th>settings</th><th>quality</th><th>passed</th><th>latency</th><th>p50 ms</th><th>MB</th><th>RAM MB</th><th>status</th><th>phase</th></tr>"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>modelcrunch optimize: {_e(frontier.model)}</title>
<style>{CSS}</style></head><body>
<h1>modelcrunch optimize — <code>{_e(frontier.model)}</code></h1>
<p class="muted">Objectives: {_e(", ".join(frontier.objectives))}. Constraints: max latency ratio {_e(c.max_latency_ratio)},
max size {_e(c.max_size_mb)} MB, min cosine {_e(c.min_cosine)}, max drop {_e(c.max_drop)}. Search space: {_e(frontier.space)}.
{len(frontier.points)} candidates measured ({frontier.measured_now} in this run), {frontier.elapsed_s:.0f} s.
Quality measured on held-out data; latency interleaved against the original.</p>
{summary}
<h2>Pareto plots</h2>{_legend()}<div class="plots">{plots}</div>
<h2>Front</h2><table id="front">{header}{"".join(_row(p) for p in frontier.front)}</table>
<h2>Per-layer decisions of the chosen model</h2>{_decisions(best) if best else "<p>none chosen</p>"}
<h2>All candidates</h2><table id="all">{header}{"".join(_row(p) for p in frontier.points)}</table>
</body></html>
"""

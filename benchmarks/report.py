"""The printed table and the PNG chart of a benchmark run (the JSON ``run.py`` writes).

``python benchmarks/report.py [results/latest.json] [--chart out.png]`` re-renders
a saved run.

Reading the table: each case shows, per loop kind, the median over the runs of
each variant (and its spread, half the min-max range relative to the median).
Ours are lettered A, B; a peer's ``A x`` column is how many times better ours
(A) did than that peer on the primary metric, in the direction that matters
(a time: peer / ours; a rate: ours / peer).  Above 1, ours is better.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_value

LETTERS = "ABCDEFGH"


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return ""
    return fmt_value(m["median"], m["unit"])


def _spread(m: dict[str, Any]) -> str:
    med = m["median"]
    if not med or len(m["runs"]) < 2:
        return ""
    return f"±{(m['max'] - m['min']) / 2 / abs(med) * 100:.0f}%"


def _speed(x: float | None) -> str:
    if x is None:
        return ""
    if x < 0.1:
        return f"{x:.3f}x"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


#: Column titles of the metrics.
METRIC_NAMES = {
    "per_op_us": "per op",
    "total_s": "total",
    "median_us": "median",
    "p99_us": "p99",
    "items_per_s": "rate",
    "ops_per_s": "rate",
    "wall_s": "wall",
    "peak_rss_mib": "peak RSS",
    "p99_ms": "p99 late",
    "p50_ms": "p50 late",
    "c1_us": "per item",
    "c16_us": "per item",
    "t1_us": "per item",
    "lock_us": "per acq",
    "main_rt_us": "per trip",
    "worker_rt_us": "per trip",
    "native_us": "per op",
    "stream_per_s": "rate",
    "zlib_per_s": "rate",
}


def _ratio(case: dict[str, Any], lp: str, ours: str, peer: str, metric: str) -> float | None:
    for r in case["loops"][lp]["ratios"]:
        if r["ours"] == ours and r["peer"] == peer and r["metric"] == metric:
            return float(r["speedup"])
    return None


def render_case(case_id: str, case: dict[str, Any]) -> list[str]:
    """The lines of one case: its variants, a column group per loop kind, then its targets."""
    loops = list(case["loops"])
    lines = []
    first = next(iter(case["loops"].values()))
    params = ", ".join(
        f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in first["params"].items()
    )
    lines.append(f"{case_id}  {case['title']}  ({params})")
    for lp in loops:
        if case["loops"][lp].get("error"):
            lines.append(f"  {lp}: FAILED: {case['loops'][lp]['error']}")
    good = [lp for lp in loops if not case["loops"][lp].get("error")]
    if not good:
        return lines
    # Rows: the union of variants over the loops, in the children's order.
    ref: dict[str, dict[str, Any]] = {}
    for lp in good:
        for n, v in case["loops"][lp]["variants"].items():
            ref.setdefault(n, v)
    names = list(ref)
    # Only ours that are compared with peers get a letter and a column.
    compared = [
        n
        for n in names
        if ref[n]["ours"]
        and any(r["ours"] == n for lp in good for r in case["loops"][lp]["ratios"])
    ]
    letter = {o: LETTERS[i] for i, o in enumerate(compared)}
    label_w = max(len(ref[n]["label"]) for n in names) + 2
    # Rows that show the same metrics share a header (B4 has three such groups).
    groups: list[tuple[tuple[str, ...], list[str]]] = []
    for n in names:
        show = tuple(ref[n].get("show") or [ref[n]["primary"]])
        if groups and groups[-1][0] == show:
            groups[-1][1].append(n)
        else:
            groups.append((show, [n]))

    # A group's ratio columns: only ours compared with a row of that group
    # (B6 and B7 have one of ours per group, each with its own peers).
    def group_ours(rows: list[str]) -> list[str]:
        return [
            o
            for o in compared
            if o in rows
            or any(
                r["ours"] == o and r["peer"] in rows
                for lp in good
                for r in case["loops"][lp]["ratios"]
            )
        ]

    ncols = max((len(group_ours(rows)) for _show, rows in groups), default=0)
    col = [11, 11, 6] + [7] * ncols
    loop_w = sum(col) + len(col)
    head1 = " " * (label_w + 2) + "".join(f"| {lp:^{loop_w - 1}}" for lp in good)
    lines.append(head1.rstrip())
    for show, rows in groups:
        ours_here = group_ours(rows)
        sub = [METRIC_NAMES.get(m, m) for m in show[:2]]
        sub += [""] * (2 - len(sub)) + ["±"] + [f"{letter[o]} x" for o in ours_here]
        sub += [""] * (len(col) - len(sub))
        head2 = f"{'':<{label_w + 2}}" + "".join(
            "|" + "".join(f"{x:>{w}} " for x, w in zip(sub, col)) for _ in good
        )
        lines += [head2.rstrip(), "-" * len(head2)]
        for n in rows:
            v = ref[n]
            row = f"{letter.get(n, ' ')} {v['label']:<{label_w}}"
            for lp in good:
                var = case["loops"][lp]["variants"].get(n)
                if var is None:
                    row += "|" + " " * loop_w
                    continue
                ms = [var["metrics"][m] for m in show[:2]]
                cells = [_cell(ms[0]), _cell(ms[1]) if len(ms) > 1 else "", _spread(ms[0])]
                cells += [_speed(_ratio(case, lp, o, n, var["primary"])) for o in ours_here]
                cells += [""] * (len(col) - len(cells))
                row += "|" + "".join(f"{c:>{w}} " for c, w in zip(cells, col))
            lines.append(row.rstrip())
        # Notes under their group: once if every row has it, else with the row's label.
        notes: dict[str, list[str]] = {}
        for n in rows:
            if ref[n]["note"]:
                notes.setdefault(ref[n]["note"], []).append(ref[n]["label"].split(" [")[0])
        for note, labels in notes.items():
            who = "" if len(labels) == len(rows) > 1 else f" ({'; '.join(labels)})"
            lines.append(f"  note{who}: {note}")
    for lp in good:
        for r in case["loops"][lp].get("ratios_skipped", []):
            lines.append(f"  {lp}: no ratio {r['ours']} vs {r['peer']} ({r['metric']}): {r['why']}")
    # Targets: one line each, a column per loop kind.
    texts: list[str] = []
    for lp in good:
        for t in case["loops"][lp]["targets"]:
            if t["text"] not in texts:
                texts.append(t["text"])
    if texts:
        tw = max(len(t) for t in texts) + 6
        lines.append((f"{'  targets':<{tw}}" + "".join(f"| {lp:<30}" for lp in good)).rstrip())
        for text in texts:
            row = f"    {text:<{tw - 4}}"
            for lp in good:
                t = next((t for t in case["loops"][lp]["targets"] if t["text"] == text), None)
                cell = "" if t is None else f"{t['shown']}  {'met' if t['met'] else 'NOT MET'}"
                if t is not None and t.get("veto"):
                    cell += f" ({t['veto']})"
                row += f"| {cell:<30}"
            lines.append(row.rstrip())
    return lines


def render(doc: dict[str, Any]) -> str:
    """The whole printed report of a run."""
    env = doc["environment"]
    cfg = doc["config"]
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    out = [
        "tokio_runtime benchmarks (issue 5) - medians of "
        f"{cfg['repeat']} run(s){' [QUICK sizes]' if cfg['quick'] else ''}"
        f"{' [stdlib peers only]' if cfg['stdlib_only'] else ''}",
        f"  {doc['created_utc']}  Python {env['python']}  {env['platform']}  "
        f"{env['cpu_count']} CPUs  commit {env['git_commit']}",
        f"  load average {env['loadavg_start'][0]:.2f} at start, "
        f"{env.get('loadavg_end', [float('nan')])[0]:.2f} at end; {vers}",
        "  median of the runs; ± = half the min-max range of the runs, relative to the median;",
        "  'A x' = how many times better ours (row A) did than that row, on the first metric "
        "(>1: ours better)",
        "",
    ]
    for cid, case in doc["cases"].items():
        out += render_case(cid, case)
        out.append("")
    out.append(
        f"targets met: {doc['targets_met']} of {doc['targets_total']}"
        f"   ({doc['elapsed_s']:.0f} s{'' if doc['ok'] else ', SOME CASES FAILED'})"
    )
    return "\n".join(out)


def _short(label: str, width: int = 46) -> str:
    """``label`` cut to ``width``, keeping a trailing ``[tag]`` (B6/B7's sub-case, B3's size)."""
    if len(label) <= width:
        return label
    head, sep, tag = label.rpartition(" [")
    if sep and tag.endswith("]") and len(tag) + 3 <= width // 2:
        return head[: width - len(tag) - 3] + "…" + sep + tag
    return label[: width - 1] + "…"


def chart(doc: dict[str, Any], path: Path) -> None:
    """Draw every ours-vs-peer ratio (log scale; 1 = parity) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    cases = [
        (cid, c) for cid, c in doc["cases"].items() if any(r["ratios"] for r in c["loops"].values())
    ]
    if not cases:
        cases = list(doc["cases"].items())
    loops = doc["config"]["loops"]
    colors = {"asyncio": "#4C72B0", "uvloop": "#DD8452"}
    heights = []
    rows_per_case = []
    for _cid, c in cases:
        keys = []
        for r in c["loops"].values():
            prim = {n: v["primary"] for n, v in r["variants"].items()}
            for x in r["ratios"]:
                key = (x["ours"], x["peer"])
                if x["metric"] == prim.get(x["peer"]) and key not in keys:
                    keys.append(key)
        rows_per_case.append(keys)
        heights.append(max(1.2, 0.42 * len(keys) * max(1, len(loops)) + 0.8))
    fig, axes = plt.subplots(
        len(cases), 1, figsize=(10, sum(heights) + 1.0), gridspec_kw={"height_ratios": heights}
    )
    if len(cases) == 1:
        axes = [axes]
    for ax, (cid, c), keys in zip(axes, cases, rows_per_case):
        labels = []
        for o, p in keys:
            any_loop = next(r for r in c["loops"].values() if o in r["variants"])
            ol = any_loop["variants"][o]["label"].replace("ours: ", "")
            pv = next((r["variants"][p] for r in c["loops"].values() if p in r["variants"]), None)
            pl = pv["label"] if pv else p
            labels.append(f"{_short(ol)}\nvs {_short(pl)}")
        seen = [1.0]
        bar_h = 0.8 / max(1, len(loops))
        for j, lp in enumerate(loops):
            r = c["loops"].get(lp)
            if r is None or r.get("error"):
                continue
            prim = {n: v["primary"] for n, v in r["variants"].items()}
            vals = []
            for o, p in keys:
                sp = next(
                    (
                        x["speedup"]
                        for x in r["ratios"]
                        if x["ours"] == o and x["peer"] == p and x["metric"] == prim.get(p)
                    ),
                    math.nan,
                )
                vals.append(sp)
            ys = [i + j * bar_h for i in range(len(keys))]
            ax.barh(ys, vals, height=bar_h, color=colors.get(lp, None), label=lp)
            for y, v in zip(ys, vals):
                if v == v:
                    seen.append(v)
                    ax.text(v, y, f" {v:.2g}x", va="center", fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(min(seen) / 1.6, max(seen) * 2.2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks([i + bar_h * (len(loops) - 1) / 2 for i in range(len(keys))])
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        met = "; ".join(
            f"{lp} {sum(t['met'] for t in r['targets'])}/{len(r['targets'])}"
            for lp, r in c["loops"].items()
            if r["targets"]
        )
        title = f"{cid}: {c['title']}" + (f"\ntargets met: {met}" if met else "")
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    axes[-1].set_xlabel("how many times better ours did (log scale; >1: ours better)", fontsize=8)
    quick = " [QUICK sizes]" if doc["config"]["quick"] else ""
    fig.suptitle(
        f"tokio_runtime vs peers, medians of {doc['config']['repeat']} runs{quick} - "
        f"{doc['created_utc']}, commit {doc['environment']['git_commit']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (sum(heights) + 1.0)))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Re-render a saved run."""
    ap = argparse.ArgumentParser(description="Print (and chart) a saved benchmark run.")
    ap.add_argument(
        "json",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "latest.json",
    )
    ap.add_argument("--chart", type=Path, help="also draw the chart to this PNG")
    args = ap.parse_args()
    doc = json.loads(args.json.read_text())
    print(render(doc))
    if args.chart:
        chart(doc, args.chart)


if __name__ == "__main__":
    main()

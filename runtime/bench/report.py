"""`fakedet bench` output: the console table, CSV and JSON files."""

from __future__ import annotations

import csv
import io
import json

from fakedet.atomic import atomic_write_text

from .schema import STAGES, validate_report

CSV_COLUMNS = ["backend", "precision", "batch", "artifact", "throughput_img_s", "throughput_iqr", "throughput_min",
               "throughput_max", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "iterations"] + \
              [f"{s}_ms" for s in STAGES] + ["device", "caption_tokens"]


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    tokens = report.get("settings", {}).get("caption_tokens")
    for r in report["results"]:
        t, lat, sp = r["throughput_img_s"], r["latency_ms"], r["split_ms"]
        w.writerow([r["backend"], r["precision"], r["batch"], r["artifact"], f"{t['median']:.3f}", f"{t['iqr']:.3f}",
                    f"{t['min']:.3f}", f"{t['max']:.3f}"] + [f"{lat[k]:.4f}" for k in ("p50", "p90", "p99", "max", "mean")]
                   + [r["iterations"]] + ["" if sp[s] is None else f"{sp[s]:.4f}" for s in STAGES]
                   + [r["device"], "" if tokens is None else tokens])
    return buf.getvalue()


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def format_table(report: dict) -> str:
    head = ["backend", "prec", "batch", "img/s", "spread", "p50", "p90", "p99", "max", "pre", "h2d", "compute",
            "d2h", "e2e"]
    rows = [head]
    for r in report["results"]:
        t, lat, sp = r["throughput_img_s"], r["latency_ms"], r["split_ms"]
        rows.append([r["backend"], r["precision"], str(r["batch"]), f"{t['median']:.1f}",
                     f"{t['min']:.1f}-{t['max']:.1f}"] + [_ms(lat[k]) for k in ("p50", "p90", "p99", "max")]
                    + [_ms(sp[s]) for s in STAGES])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("latency columns in ms (per batch); spread = min-max of the repeat medians; '-' = not separable "
                 "or not measured")
    tokens = report.get("settings", {}).get("caption_tokens")
    if tokens is not None:
        lines.append(f"each image fed with a caption of {tokens} tokens (--caption-tokens)")
    for s in report["skipped"]:
        where = f" batch {s['batch']}" if s["batch"] is not None else ""
        lines.append(f"skipped {s['backend']} {s['precision']}{where}: {s['reason']}")
    if report.get("trtexec"):
        from .trtexec import format_lines

        lines.extend(format_lines(report["trtexec"]))
    return "\n".join(lines)


def write_json(report: dict, path) -> None:
    validate_report(report)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def write_csv(report: dict, path) -> None:
    atomic_write_text(path, to_csv(report))

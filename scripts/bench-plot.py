"""Plots and summaries for scripts/bench-report and scripts/soak (run with .venv-bench's python).

usage:
  bench-plot.py report POINTS.tsv OUT.svg
      POINTS.tsv: case, connections, rps, p99_ms per line (tab-separated, with a header line).
      Draws requests/s and p99 latency against connections, one line per case.
  bench-plot.py soak OUT.svg SUMMARY.json NAME=SAMPLES.tsv...
      SAMPLES.tsv: t_s, rss_kib, fds per line (tab-separated, with a header line).
      Draws RSS and open file descriptors over time, one line per sink, and writes per-sink
      first/last/max and least-squares slopes (fitted after the first fifth of the run) to SUMMARY.json.
"""

import csv
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def report(points_path, out):
    rows = read_tsv(points_path)
    cases = []
    for r in rows:
        if r["case"] not in cases:
            cases.append(r["case"])
    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    for case in cases:
        pts = sorted((int(r["connections"]), float(r["rps"]), float(r["p99_ms"]))
                     for r in rows if r["case"] == case)
        xs = [p[0] for p in pts]
        ax_rps.plot(xs, [p[1] for p in pts], marker="o", label=case)
        ax_p99.plot(xs, [p[2] for p in pts], marker="o", label=case)
    for ax, title, ylabel in ((ax_rps, "Throughput (answers 200)", "webhooks/s"),
                              (ax_p99, "p99 latency", "ms (log)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (closed loop)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_p99.set_yscale("log")
    ax_rps.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def slope_per_min(ts, ys):
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den * 60


def soak(out, summary_path, series):
    fig, (ax_rss, ax_fd) = plt.subplots(1, 2, figsize=(12, 4.8))
    summary = {}
    for spec in series:
        name, path = spec.split("=", 1)
        rows = read_tsv(path)
        ts = [float(r["t_s"]) for r in rows]
        rss = [float(r["rss_kib"]) / 1024 for r in rows]
        fds = [float(r["fds"]) for r in rows]
        if not ts:
            continue
        cut = ts[0] + (ts[-1] - ts[0]) / 5
        fit = [i for i, t in enumerate(ts) if t >= cut]
        summary[name] = {
            "samples": len(ts),
            "duration_s": ts[-1] - ts[0],
            "rss_first_mib": rss[0], "rss_last_mib": rss[-1], "rss_max_mib": max(rss),
            "rss_fit_first_mib": rss[fit[0]],
            "rss_slope_mib_per_min": slope_per_min([ts[i] for i in fit], [rss[i] for i in fit]),
            "fds_first": fds[0], "fds_last": fds[-1], "fds_max": max(fds),
            "fds_slope_per_min": slope_per_min([ts[i] for i in fit], [fds[i] for i in fit]),
        }
        minutes = [t / 60 for t in ts]
        ax_rss.plot(minutes, rss, label=name)
        ax_fd.plot(minutes, fds, label=name)
    ax_rss.set_yscale("log")
    for ax, title, ylabel in ((ax_rss, "Server RSS (VmRSS)", "MiB (log)"),
                              (ax_fd, "Server open file descriptors", "fds")):
        ax.set_xlabel("minutes")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    with open(summary_path, "w") as f:
        json.dump(summary, f)


def main(argv):
    if len(argv) == 4 and argv[1] == "report":
        report(argv[2], argv[3])
    elif len(argv) >= 5 and argv[1] == "soak":
        soak(argv[2], argv[3], argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

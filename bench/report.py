"""Write bench/RESULTS.md from the newest JSON result of each bench script.

Usage::

    python bench/report.py            # reads bench/results/*.json, writes bench/RESULTS.md
    python bench/report.py --stdout   # print instead of writing

Sections: bench/quality.py (quality-*.json), bench/movielens.py
(movielens-fast/keras-*.json), bench/peers.py (peers-*.json),
bench/gowalla.py (gowalla-*.json), bench/candidate_runs.py, bench/ab_epochs.py,
bench/throughput.py, bench/roofline.py, bench/evaluation.py, bench/csv_memory.py and
bench/compile.py.

Each section names the command that produced it; figures are copied from the
JSON files, never typed by hand.

``--section gowalla`` renders only that section and splices it into the
existing bench/RESULTS.md (replacing an older one), so a checkout that holds
only some of the JSON files does not drop the other sections.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

from _common import BENCH as HERE, RESULTS, fmt, table, versions_line


def newest(prefix):
    files = sorted(RESULTS.glob(f"{prefix}-*.json"))
    return (files[-1], json.loads(files[-1].read_text())) if files else (None, None)


def machine_section(peers):
    lines = ["## Machine", ""]
    if peers:
        m = peers["machine"]
        lines.append(f"- CPU: {m.get('cpu')}, {m.get('cores')} cores, {m.get('platform')}")
        lines.append(f"- git commit of the peers run: `{m.get('git_commit')}`"
                     + (" (with uncommitted changes)" if m.get("git_dirty") else ""))
        lines += ["- " + versions_line(python, versions, code=True)
                  for python, versions in peers.get("versions", {}).items()]
    lines.append("")
    return lines


def peers_section(path, peers, title="Side by side with implicit, LightFM and cornac",
                  command="python bench/peers.py"):
    if not peers:
        return []
    lines = [f"## {title}", "",
             f"`{command}` ({path.name}). Same CSR matrices for every library, "
             "factors 64; AUC computed alike for all from the exported factors "
             "(`full_auc`: the notebook's metric; `AUC`: train items excluded). "
             "samples/s = train positives x epochs / summed epoch seconds; the ratio is "
             "against implicit at the same thread count, measured in the same run.", ""]
    for name, info in peers["datasets"].items():
        lines.append(f"### {name}: {info.get('description', '')}")
        lines.append("")
        pop = info.get("popularity_baseline") or {}
        lines.append(f"Train {info['shape'][0]:,} x {info['shape'][1]:,}, "
                     f"{info['train_nnz']:,} train and {info['test_nnz']:,} test positives. "
                     "The popularity row scores every item by its train count (what "
                     "`bpr_numba.baselines.Popularity` does), on the same test users.")
        lines.append("")
        rows = []
        if pop:
            rows.append(["popularity", "item train count"] + ["-"] * 5
                        + [fmt(pop.get("full_auc"), ".4f"), fmt(pop.get("auc"), ".4f")])
        rows += [[r["library"], r["config"], r["threads"], r["epochs"],
                  fmt(r.get("seconds_per_epoch")), f"{r['samples_per_s'] / 1e6:.2f} M",
                  fmt(r.get("ratio_vs_implicit"), ".2f"), fmt(r.get("full_auc"), ".4f"),
                  fmt(r.get("auc"), ".4f")]
                 for r in peers["rows"] if r["dataset"] == name and "error" not in r]
        lines += table(("library", "config", "threads", "epochs", "s/epoch", "samples/s",
                        "vs implicit", "full AUC", "AUC"), rows, "llrrrrrrr")
        lines.append("")
    return lines


def movielens_section():
    lines = []
    for mode in ("fast", "keras"):
        path, d = newest(f"movielens-{mode}")
        if not d:
            continue
        if not lines:
            lines = ["## MovieLens 100k: the main job", ""]
        cmd = "python bench/movielens.py --seeds 5" + (" --keras --epochs 20" if mode == "keras" else "")
        curve = d["auc_median_by_epoch"]
        lines += [f"`{cmd}` ({path.name}): {d['seeds']} seeds, {d['epochs']} epochs.", ""]
        lines += table(
            ("mode", "median final full AUC (min..max)", "AUC after epoch 1 / 10 / 20",
             "total_seconds", "whole process", "training s/epoch", "cold-cache process"),
            [(mode, f"{d['final_auc_median']:.4f} ({d['final_auc_min']:.4f}.."
                    f"{d['final_auc_max']:.4f})",
              " / ".join(fmt(curve[e], ".4f") if e < len(curve) else "-" for e in (0, 9, 19)),
              f"{d['total_seconds_median']:.2f}", f"{d['process_wall_seconds_median']:.2f}",
              f"{d['train_seconds_per_epoch_median']:.3f}",
              f"{d['cold_cache_process_wall_seconds']:.2f}")], "lllrrrr")
        lines.append("")
    pop = popularity_of("ml-100k")
    if lines and pop is not None:
        lines += [f"Popularity baseline (`bench/quality.py`, same data): full AUC {pop:.4f}.", ""]
    return lines


def popularity_of(dataset):
    """Full AUC of the Popularity row of the newest quality run on ``dataset``, or None."""
    _, d = newest("quality")
    for row in (d or {}).get("rows", []):
        if row.get("dataset") == dataset and row.get("library") == "popularity":
            return row["metrics"]["full_auc"]["median"]
    return None


def bench_module(prefix):
    """Import bench/<prefix>.py (its siblings, e.g. peers.py, importable too)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(f"bench_{prefix}", HERE / f"{prefix}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_of(prefix, title, command):
    """A section rendered by the bench script's own ``markdown(record)`` from its JSON."""
    path, d = newest(prefix)
    if not d:
        return []
    return [f"## {title}", "", f"`{command}` ({path.name})", "",
            bench_module(prefix).markdown(d).strip(), ""]


def quality_section():
    """bench/quality.py's tables; the record names its own command, machine and commit."""
    path, d = newest("quality")
    if not d:
        return []
    return ["## Quality: Popularity, bpr-numba with and without item bias, and the peers", "",
            f"From {path.name}:", "", bench_module("quality").markdown(d).strip(), ""]


def gowalla_section():
    """bench/gowalla.py's tables; the record names its own command, machine and load."""
    path, d = newest("gowalla")
    if not d:
        return []
    return ["## Gowalla: the NGCF / LightGCN protocol, time to quality", "",
            f"From {path.name}; the plot of Recall@20 against training seconds is drawn by "
            "the same run to bench/results/gowalla.png (not committed; `python "
            f"bench/gowalla.py --plot-from bench/results/{path.name}` redraws it).", "",
            bench_module("gowalla").markdown(d).strip(), ""]


def candidate_runs_section():
    """bench/candidate_runs.py's tables."""
    return markdown_of("candidate_runs", "Candidates in runs against independent candidates "
                       "(Gowalla)", "python bench/candidate_runs.py")


def ab_epochs_section():
    """bench/ab_epochs.py's table (the newest run: one revision against another)."""
    return markdown_of("ab_epochs", "Epoch seconds against an earlier revision",
                       "python bench/ab_epochs.py --base <revision>")


def splice(text, section, heading, before):
    """``text`` with its ``heading`` section (up to the next "## ") replaced by ``section``
    lines, or inserted before the first heading in ``before`` (else at the end)."""
    lines = text.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        del lines[start:end]
    else:
        start = next((i for i, line in enumerate(lines)
                      if any(line.startswith(b) for b in before)), len(lines))
        if start == len(lines):
            lines.append("")
            start += 1
    lines[start:start] = section
    return "\n".join(lines).rstrip() + "\n"


# --section: the section's renderer, its heading, and the headings it goes before
# (main()'s order) when RESULTS.md has none yet.
SECTIONS = {"gowalla": (lambda: gowalla_section(), "## Gowalla:",
                        ("## MovieLens 100k", "## Side by side")),
            "candidate_runs": (lambda: candidate_runs_section(), "## Candidates in runs",
                               ("## MovieLens 100k", "## Side by side")),
            "ab_epochs": (lambda: ab_epochs_section(), "## Epoch seconds against",
                          ("## MovieLens 100k", "## Side by side"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stdout", action="store_true")
    parser.add_argument("--section", choices=sorted(SECTIONS), default=None,
                        help="render only this section into the existing RESULTS.md")
    args = parser.parse_args()
    if args.section:
        render, heading, before = SECTIONS[args.section]
        section = render()
        if not section:
            raise SystemExit(f"no JSON result for the {args.section} section in {RESULTS}")
        text = splice((HERE / "RESULTS.md").read_text(), section, heading, before)
        if args.stdout:
            print(text)
        else:
            (HERE / "RESULTS.md").write_text(text)
            print(f"wrote the {args.section} section into {HERE / 'RESULTS.md'}")
        return
    peers_path, peers = newest("peers")
    lines = ["# Benchmark results", "",
             "Generated by `python bench/report.py` from the JSON files in `bench/results/` "
             "(not committed). The machine is shared and noisy: compare ratios measured in "
             "one run, not absolute figures across runs.", ""]
    lines += machine_section(peers)
    lines += quality_section()
    lines += gowalla_section()
    lines += candidate_runs_section()
    lines += ab_epochs_section()
    lines += movielens_section()
    lines += peers_section(peers_path, peers)
    for number, speed_path in enumerate(sorted(RESULTS.glob("speed-*.json")), start=1):
        speed = json.loads(speed_path.read_text())
        run_args = speed.get("args", {})
        lines += peers_section(
            speed_path, speed, f"Speed against implicit, repeated (median of 3), run {number}",
            "python bench/peers.py --datasets synthetic --libraries bpr-numba implicit "
            f"--ours-configs {' '.join(run_args.get('ours_configs', []))} --repeats "
            f"{run_args.get('repeats')} --output bench/results/speed-<time>.json")
    lines += markdown_of("throughput", "Training throughput", "python bench/throughput.py --repeats 3")
    lines += markdown_of("roofline", "Roofline", "python bench/roofline.py --throughput <throughput json>")
    lines += markdown_of("evaluation", "Evaluation throughput", "python bench/evaluation.py")
    lines += markdown_of("csv_memory", "Reading a CSV: time and memory",
                         "python bench/csv_memory.py --json")
    lines += markdown_of("compile", "Compilation: cold and warm numba cache",
                         "python bench/compile.py")
    text = "\n".join(lines).rstrip() + "\n"
    if args.stdout:
        print(text)
    else:
        (HERE / "RESULTS.md").write_text(text)
        print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()

"""What every bench script shares, defined once: environment, records, tables, arguments, children.

Standard library only: bench/peers.py's driver and bench/_workers.py run under
either interpreter (the peers' virtualenv has no bpr_numba), and the memory
children of throughput.py and csv_memory.py import it before anything else.

* environment: :func:`cpu_model`, :func:`git_state`, :func:`versions`,
  :func:`environment` (the header of every JSON record), :func:`machine_info`;
* records: :func:`stamp`, :func:`result_path`, :func:`write_record` (one JSON
  file in the ignored bench/results/), :func:`finish` (write and print a run);
* tables: :func:`fmt`, :func:`si`, :func:`rate`, :func:`versions_line`, :func:`table`
  (markdown);
* arguments: :func:`make_parser`, :func:`add_interpreter_arguments`,
  :func:`add_output_argument`, :func:`options` (the parsed options for a record);
* children: :func:`workdir` (kept or temporary), :func:`log`, :func:`run_json` (a fresh process whose last stdout
  line is JSON), :func:`cold_and_cached` (the same snippet with an empty, then
  the warm numba cache), :func:`proc_status`, :func:`reset_peak` and
  :func:`maxrss_bytes` (peak RSS of a child), :func:`python_env`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
DEFAULT_PEERS_PYTHON = "/work/peers-venv/bin/python"
DEFAULT_OURS_PYTHON = "/work/venv/bin/python"


# ------------------------------------------------------------------ environment


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (platform.processor() as a fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_state(folder=None):
    """``(commit, dirty)`` of the checkout holding ``folder`` (("", None) without git)."""
    here = Path(folder or BENCH)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=here).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, cwd=here).stdout.strip())
    except OSError:
        return "", None
    return commit, dirty


def versions(*names):
    """``{name: version}`` of the given distributions in this interpreter (None when missing).

    Reads an already imported module's ``__version__`` first, else the installed
    metadata, so asking imports nothing (the stdlib-only driver stays so).
    """
    from importlib import metadata

    out = {}
    for name in names:
        module = sys.modules.get(name.replace("-", "_"))
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        out[name] = version
    return out


def environment(*extra_versions):
    """The header of every JSON record: machine, interpreter, library versions, git state.

    Keys: ``cpu``, ``cores``, ``affinity``, ``platform``, ``python``, ``numpy``,
    ``numba``, ``scipy`` (None where not installed) and ``extra_versions``,
    ``numba_threads`` (when numba is imported), ``git_commit``,
    ``git_dirty_tracked_files``, ``load_average_start`` (the 1, 5, 15 min triple).
    """
    env = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
           "python": platform.python_version()}
    try:
        env["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    env.update(versions("numpy", "numba", "scipy", *extra_versions))
    numba = sys.modules.get("numba")
    if numba is not None:
        env["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    env["git_commit"], env["git_dirty_tracked_files"] = git_state()
    env["load_average_start"] = os.getloadavg()
    return env


def machine_info():
    """The ``machine`` block of the worker drivers' records (peers.py, quality.py).

    :func:`environment` of the driver's interpreter, plus ``driver_python`` and
    ``git_dirty`` (the names report.py and quality.py read).
    """
    info = environment()
    info["driver_python"] = sys.version.split()[0]
    info["git_dirty"] = info["git_dirty_tracked_files"]
    return info


# ------------------------------------------------------------------ records


def stamp():
    """The timestamp of result file names: ``YYYYmmdd-HHMMSS``."""
    return time.strftime("%Y%m%d-%H%M%S")


def result_path(prefix, output=None):
    """``output`` as a Path, or the default ``bench/results/<prefix>-<timestamp>.json``."""
    return Path(output) if output else RESULTS / f"{prefix}-{stamp()}.json"


def write_record(record, prefix, output=None, indent=1):
    """Write ``record`` as one JSON file (see :func:`result_path`); return its path."""
    path = result_path(prefix, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=indent))
    return path


def finish(record, prefix, render, output=None, start=None):
    """Close a run: ``load_average_end`` and ``process_wall_s`` (since ``start``), write the
    record (:func:`write_record`), print ``render(record)`` and the JSON path; return the path."""
    record["load_average_end"] = os.getloadavg()
    if start is not None:
        record["process_wall_s"] = time.perf_counter() - start
    path = write_record(record, prefix, output)
    print()
    print(render(record))
    print(f"\nJSON: {path}")
    return path


# ------------------------------------------------------------------ tables


def fmt(value, spec=".3f"):
    """``format(value, spec)``, or "n/a" for None."""
    return "n/a" if value is None else format(value, spec)


def si(x, unit=""):
    """1.23 G / 4.56 M / 789 k / 1.23 with ``unit`` appended; "-" for None."""
    if x is None:
        return "-"
    if x >= 1e9:
        return f"{x / 1e9:.2f} G{unit}"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M{unit}"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k{unit}"
    return f"{x:.2f}{unit}"


def rate(x):
    """Samples per second as "1.23 M" or "456 k"."""
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def versions_line(python, versions, code=False):
    """``python: name version, ...`` (sorted by name; the interpreter in backticks with ``code``)."""
    name = f"`{python}`" if code else python
    return f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))


def table(header, rows, align=None):
    """Markdown table lines.

    ``header``: the column titles; ``rows``: sequences of cells (made str);
    ``align``: one letter per column, "l" (left) or "r" (right); default: the
    first column left, the others right.
    """
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


# ------------------------------------------------------------------ arguments


def make_parser(doc, script=None):
    """A bench script's ArgumentParser, its description the first line of ``doc``.

    The epilog is the rest of ``doc`` (as written), or with ``script`` (the
    file's name) a pointer to its docstring, the defaults then shown per option.
    """
    description = doc.split("\n")[0]
    if script:
        return argparse.ArgumentParser(
            description=description,
            epilog=f"See the module docstring (top of bench/{script}) for what is measured.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return argparse.ArgumentParser(description=description, epilog=doc.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_interpreter_arguments(parser, timeout=None):
    """``--peers-python``, ``--ours-python``, ``--workdir`` and ``--timeout`` of the worker drivers."""
    parser.add_argument("--peers-python", default=DEFAULT_PEERS_PYTHON,
                        help="interpreter with implicit, lightfm and cornac")
    parser.add_argument("--ours-python", default=DEFAULT_OURS_PYTHON,
                        help="interpreter with bpr_numba (also prepares data and scores)")
    parser.add_argument("--workdir", default=None,
                        help="keep data and factors here (data is reused when present) "
                             "instead of a temporary folder")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds per worker")


def add_output_argument(parser, prefix, *names):
    """The JSON path option (``--output`` unless ``names`` says otherwise), default None."""
    names = names or ("--output",)
    parser.add_argument(*names, default=None, type=Path, dest="output",
                        metavar=names[0].lstrip("-").upper(),
                        help=f"JSON path (default bench/results/{prefix}-<timestamp>.json)")


def options(args):
    """``vars(args)`` for a record: paths as strings."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


# ------------------------------------------------------------------ children


@contextlib.contextmanager
def workdir(path, prefix):
    """Yield ``path`` as a Path (made if missing, kept), or a temporary folder removed after."""
    if path:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)



def log(message):
    """A progress line on stderr (stdout carries the tables)."""
    print(message, file=sys.stderr, flush=True)


class ChildFailed(subprocess.CalledProcessError):
    """A child's non-zero exit; its message ends with the child's last stderr lines."""

    def __str__(self):
        tail = "\n".join((self.stderr or "").strip().splitlines()[-6:])
        return f"{super().__str__()}\n{tail}"


def run_json(argv, env=None, timeout=None, cwd=None):
    """Run ``argv`` in a fresh process (in folder ``cwd``); return ``(last stdout line as
    JSON, wall seconds)``.

    A non-zero exit raises :class:`ChildFailed` (a ``subprocess.CalledProcessError``
    whose ``stderr`` holds the child's).
    """
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise ChildFailed(proc.returncode, argv, proc.stdout, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def python_env(**extra):
    """``os.environ`` with bench/ on ``PYTHONPATH`` (children import _common) and ``extra``."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    return env


def cold_and_cached(snippet, python=None):
    """Run ``python -c snippet`` twice in fresh processes sharing a new, empty numba cache.

    The snippet prints a JSON object as its last line. Returns
    ``{"cold": {...}, "cached": {...}}``, each with ``process_wall_s`` added:
    the first run compiles the kernels, the second loads them from the cache.
    """
    result = {}
    with tempfile.TemporaryDirectory(prefix="bpr-bench-numba-cache-") as cache:
        env = python_env(NUMBA_CACHE_DIR=cache)
        for label in ("cold", "cached"):
            result[label], wall = run_json([python or sys.executable, "-c", snippet], env=env)
            result[label]["process_wall_s"] = wall
    return result


def proc_status():
    """``{"VmRSS": bytes, "VmHWM": bytes}`` of this process from /proc/self/status."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def reset_peak():
    """Reset VmHWM to the current RSS through /proc/self/clear_refs; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def maxrss_bytes():
    """``ru_maxrss`` of this process in bytes (Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

"""Helpers shared by the bench scripts: machine and git facts for the JSON records."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


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
    here = Path(folder or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=here).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, cwd=here).stdout.strip())
    except OSError:
        return "", None
    return commit, dirty


def cold_and_cached(snippet):
    """Run ``python -c snippet`` twice in fresh processes sharing a new, empty numba cache.

    The snippet prints a JSON object as its last line. Returns
    ``{"cold": {...}, "cached": {...}}``, each with ``process_wall_s`` added:
    the first run compiles the kernels, the second loads them from the cache.
    """
    import json
    import os
    import sys
    import tempfile
    import time

    result = {}
    with tempfile.TemporaryDirectory(prefix="bpr-bench-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "cached"):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True,
                                 text=True, check=True)
            wall = time.perf_counter() - start
            result[label] = json.loads(out.stdout.strip().splitlines()[-1])
            result[label]["process_wall_s"] = wall
    return result

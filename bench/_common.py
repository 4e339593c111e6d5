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

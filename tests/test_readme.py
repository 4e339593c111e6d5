"""The README's "Your own data" examples run as written, on a CSV of string ids."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from bpr_numba import BPR
from bpr_numba.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(name):
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-example: {name} -->\n```\w+\n(.*?)```", text, re.S)
    assert match, f"README has no example {name!r}"
    return match.group(1)


@pytest.fixture
def events_csv(tmp_path, monkeypatch):
    """events.csv with string ids (including "alice") in a fresh working folder."""
    rng = np.random.default_rng(0)
    users = ["alice"] + [f"user{k:03d}" for k in range(80)]
    lines = ["user,item,rating,timestamp"]
    for t in range(4000):
        user = users[int(rng.integers(len(users)))] if t % 40 else "alice"
        item = f"movie-{int(rng.zipf(1.4)) % 300:03d}"
        lines.append(f"{user},{item},{int(rng.integers(1, 6))},{1_700_000_000 + 37 * t}")
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_example_trains_evaluates_and_answers_in_raw_ids(events_csv, capsys):
    namespace = {}
    exec(compile(_example("own-data"), "README own-data", "exec"), namespace)
    out = capsys.readouterr().out
    assert "'auc'" in out and "'ndcg@10'" in out
    ids = namespace["ids"]
    assert ids.shape == (5,) and all(str(x).startswith("movie-") for x in ids)
    data = namespace["data"]
    alice = data.user_map.to_index("alice")
    assert not set(ids) & set(data.item_ids[data.matrix[alice].indices])
    loaded = BPR.load(events_csv / "model.npz")
    again, _ = loaded.recommend("alice", data, N=5, raw_ids=True)
    np.testing.assert_array_equal(again, ids)


def test_cli_example_runs(events_csv, capsys):
    commands = [line for line in _example("own-data-cli").splitlines() if line.strip()]
    assert len(commands) == 2
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "bpr-numba"
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert "Top 5 items for user alice" in out
    shown = [line.split(". ", 1)[1].split("  (")[0] for line in out.splitlines()
             if re.match(r"\s+\d+\. ", line)]
    assert len(shown) == 5 and all(x.startswith("movie-") for x in shown)


def test_in_python_example_runs_on_movielens(movielens, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_example("python"), "README python", "exec"), namespace)
    lines = capsys.readouterr().out.splitlines()
    assert 0.85 < float(lines[0]) <= 1.0  # full AUC after the default fit
    assert "'precision@10'" in lines[1]
    assert namespace["ids"].shape == (10,) and (tmp_path / "model.npz").exists()

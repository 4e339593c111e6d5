"""The command line: train, evaluate, recommend, exit codes and messages."""

import builtins
import json
import subprocess
import sys

import pytest

from bpr_numba.cli import main


def test_train_prints_the_notebook_summary_and_json(movielens, capsys):
    assert main(["train", "--dataset", "ml-100k", "--epochs", "2", "--seed", "0",
                 "--factors", "100", "--optimizer", "sgd", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    text = "\n".join(out)
    assert "AUC before training" in text and "Epoch   2/2" in text and "Final AUC" in text
    record = json.loads(out[-1])
    assert set(record) == {"auc_before", "auc", "final_auc", "train_seconds", "eval_seconds",
                           "total_seconds"}
    assert len(record["auc"]) == 2 and record["final_auc"] == record["auc"][-1]
    assert abs(record["auc_before"] - 0.5) < 0.05 and record["final_auc"] > 0.8
    assert record["total_seconds"] >= record["train_seconds"] + record["eval_seconds"] > 0


def test_train_keras_reports_the_notebook_parameter_counts(movielens, capsys):
    assert main(["train", "--keras", "--epochs", "1", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert "94,400 parameters" in text and "168,300 parameters" in text
    assert "dense-adam" in text


def test_save_evaluate_recommend(movielens, tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--epochs", "2", "--seed", "1", "--save", str(path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(path), "--metrics", "auc,precision@10,ndcg@10",
                 "--json"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(results) == {"auc", "precision@10", "ndcg@10"}
    assert 0.8 < results["auc"] <= 1 and 0 < results["precision@10"] <= 1
    assert main(["recommend", "--model", str(path), "--user", "42", "-n", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Top 5 movies for user 42")
    assert len(lines) == 6 and "(id 0," not in "\n".join(lines)
    train, _ = movielens
    liked = set(train[42].indices.tolist())
    for line in lines[1:]:
        item = int(line.split("(id ")[1].split(",")[0])
        assert item not in liked and item > 0


def test_plot_without_matplotlib_says_how_to_install(movielens, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code = main(["train", "--epochs", "1", "--plot", str(tmp_path / "curve.png")])
    assert code == 1
    assert "pip install 'bpr-numba[plot]'" in capsys.readouterr().err


def test_plot_draws_a_png(movielens, tmp_path):
    # matplotlib is an optional extra of the package, and part of the test extra.
    path = tmp_path / "curve.png"
    assert main(["train", "--epochs", "2", "--plot", str(path)]) == 0
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_bad_values_exit_1_with_one_line(capsys):
    assert main(["train", "--lr", "-1", "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bpr-numba: error: learning_rate must be > 0.0")
    assert len(err.splitlines()) == 1


def test_missing_data_exits_1_and_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BPR_NUMBA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "--data-dir", str(tmp_path), "--no-download"]) == 1
    assert str(tmp_path) in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["train", "--optimizer", "lbfgs"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "bpr_numba", "train", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--keras" in out.stdout and "--json" in out.stdout

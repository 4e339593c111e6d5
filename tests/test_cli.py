"""The command line: train, evaluate, recommend, exit codes and messages."""

import builtins
import json
import subprocess
import sys

import pytest

from bpr_numba import BPR
from bpr_numba.cli import main


def test_train_prints_the_notebook_summary_and_json(movielens, capsys):
    assert main(["train", "--dataset", "ml-100k", "--epochs", "2", "--seed", "0",
                 "--factors", "100", "--optimizer", "sgd", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    text = "\n".join(out)
    assert "AUC before training" in text and "Epoch   2/2" in text and "Final AUC" in text
    record = json.loads(out[-1])
    assert set(record) == {"auc_before", "auc", "final_auc", "train_seconds", "eval_seconds",
                           "total_seconds", "evaluated_epochs", "metrics", "final"}
    assert len(record["auc"]) == 2 and record["final_auc"] == record["auc"][-1]
    assert record["evaluated_epochs"] == [1, 2] and record["metrics"] == {"full_auc": record["auc"]}
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


def _write_events(path, n_users=60, n_items=40, seed=0):
    """A CSV of string ids with ratings and timestamps; returns the liked (user, item) pairs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["user,item,rating,ts"]
    liked = set()
    for t in range(1500):
        u = f"user-{rng.integers(n_users)}"
        i = f"item-{min(int(rng.zipf(1.3)), n_items)}"
        r = int(rng.integers(1, 6))
        lines.append(f"{u},{i},{r},{1_600_000_000 + t}")
        liked.add((u, i, r))
    path.write_text("\n".join(lines) + "\n")
    return liked


def test_csv_train_evaluate_recommend_in_raw_ids(tmp_path, capsys):
    events = tmp_path / "events.csv"
    _write_events(events)
    data = ["--csv", str(events), "--user-col", "user", "--item-col", "item",
            "--rating-col", "rating", "--min-rating", "4", "--timestamp-col", "ts"]
    path = tmp_path / "model.npz"
    assert main(["train", *data, "--split", "leave-2-out", "--epochs", "3", "--seed", "0",
                 "--save", str(path), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "split leave-2-out" in out[0] and "events.csv" in out[0]
    assert json.loads(out[-1])["final_auc"] > 0.5
    assert main(["evaluate", "--model", str(path), *data, "--split", "leave-2-out",
                 "--json"]) == 0
    assert 0 < json.loads(capsys.readouterr().out.splitlines()[-1])["auc"] <= 1
    assert main(["recommend", "--model", str(path), *data, "--user", "user-3", "-n", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Top 4 items for user user-3")
    from bpr_numba import Interactions

    whole = Interactions.from_csv(events, "user", "item", "rating", "ts", min_rating=4)
    row = whole.user_map.to_index("user-3")
    seen = set(whole.item_ids[whole.matrix[row].indices])
    shown = [line.split(". ", 1)[1].split("  (")[0] for line in lines[1:]]
    assert len(shown) == 4 and all(item.startswith("item-") for item in shown)
    assert not seen & set(shown)  # raw ids, liked items filtered
    # Other data than the model's: refused.
    other = tmp_path / "other.csv"
    _write_events(other, n_users=30, seed=1)
    assert main(["recommend", "--model", str(path), "--csv", str(other), "--user-col", "user",
                 "--item-col", "item", "--user", "user-3"]) == 1
    assert "trained on other data" in capsys.readouterr().err


def test_csv_option_errors_exit_1(tmp_path, capsys):
    events = tmp_path / "events.csv"
    _write_events(events)
    base = ["train", "--csv", str(events), "--epochs", "1"]
    assert main(base) == 1
    assert "--user-col and --item-col" in capsys.readouterr().err
    assert main([*base, "--user-col", "user", "--item-col", "item", "--split", "ua"]) == 1
    assert "random-F, leave-K-out or time-F" in capsys.readouterr().err
    assert main([*base, "--user-col", "user", "--item-col", "item", "--split",
                 "leave-1-out"]) == 1
    assert "timestamps" in capsys.readouterr().err
    assert main(["train", "--user-col", "user"]) == 1
    assert "needs --csv" in capsys.readouterr().err
    assert main([*base, "--dataset", "ml-100k"]) == 1
    assert "either --dataset or --csv" in capsys.readouterr().err
    assert main([*base, "--user-col", "nope", "--item-col", "item"]) == 1
    assert "nope" in capsys.readouterr().err
    assert main([*base, "--user-col", "user", "--item-col", "item", "--min-rating", "4"]) == 1
    assert "--min-rating needs --rating-col" in capsys.readouterr().err
    assert main([*base, "--user-col", "user", "--item-col", "item", "--split", "time-0.2"]) == 1
    assert "needs --timestamp-col" in capsys.readouterr().err
    assert main([*base, "--user-col", "user", "--item-col", "item", "--split",
                 "random-1.2.3"]) == 1
    assert "--split must be random-F" in capsys.readouterr().err


def test_csv_evaluate_without_seed_rebuilds_the_training_split(tmp_path, capsys):
    events = tmp_path / "events.csv"
    _write_events(events)
    data = ["--csv", str(events), "--user-col", "user", "--item-col", "item"]
    path = tmp_path / "model.npz"
    assert main(["train", *data, "--epochs", "2", "--save", str(path), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.splitlines()[-1])["final_auc"]
    scores = []
    for _ in range(2):
        assert main(["evaluate", "--model", str(path), *data, "--metrics", "full_auc",
                     "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out.splitlines()[-1])["full_auc"])
    assert scores[0] == scores[1] == pytest.approx(trained, abs=1e-12)


def test_movielens_1m_layout_trains_and_recommends_titles(tmp_path, capsys):
    # A small folder of ml-1m's layout (gapped ids, "::" separators, latin-1 titles).
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    import numpy as np

    rng = np.random.default_rng(0)
    movies = [10, 20, 35, 47, 90, 3000]
    lines = []
    for t in range(400):
        user = [1, 5, 9000, 12, 40][t % 5]
        lines.append(f"{user}::{movies[int(rng.integers(6))]}::{int(rng.integers(1, 6))}::"
                     f"{978300000 + t}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    titles = "\n".join(f"{m}::Film {m} (Caf\xe9)::Drama" for m in movies) + "\n"
    (folder / "movies.dat").write_bytes(titles.encode("latin-1"))
    data = ["--dataset", "ml-1m", "--data-dir", str(tmp_path), "--no-download"]
    path = tmp_path / "m.npz"
    assert main(["train", *data, "--min-rating", "3", "--epochs", "2", "--seed", "0",
                 "--save", str(path)]) == 0
    assert "MovieLens 1m, ratings >= 3 as positives, split random-0.2: 5 users, 6 items" \
        in capsys.readouterr().out
    assert main(["recommend", "--model", str(path), *data, "--min-rating", "3", "--user",
                 "9000", "--include-seen", "-n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Top 3 movies for user 9000")
    assert all("Film " in line and "(Caf\xe9)" in line for line in out[1:])


def test_csv_without_header_takes_column_positions(tmp_path, capsys):
    events = tmp_path / "events.tsv"
    _write_events(events)
    lines = events.read_text().splitlines()[1:]  # drop the header, use tabs
    events.write_text("\n".join(line.replace(",", "\t") for line in lines) + "\n")
    base = ["train", "--csv", str(events), "--no-header", "--epochs", "1", "--json"]
    assert main([*base, "--user-col", "0", "--item-col", "1", "--timestamp-col", "3",
                 "--split", "leave-1-out"]) == 0
    assert "split leave-1-out" in capsys.readouterr().out
    assert main([*base, "--user-col", "user", "--item-col", "1"]) == 1
    assert "0-based positions; got 'user'" in capsys.readouterr().err


def test_train_metrics_every_n_epochs_match_evaluate(movielens, tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--epochs", "3", "--seed", "0", "--metrics", "auc, NDCG@10",
                 "--eval-every", "2", "--save", str(path), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "AUC before training" not in "\n".join(out)
    epochs = [line for line in out if line.startswith("Epoch")]
    assert epochs[0].startswith("Epoch   1/3: loss ")  # not evaluated
    assert epochs[1].startswith("Epoch   2/3: auc 0.") and "ndcg@10 0." in epochs[1]
    assert epochs[2].startswith("Epoch   3/3: auc 0.")
    record = json.loads(out[-1])
    assert record["evaluated_epochs"] == [2, 3] and "final_auc" not in record
    assert set(record["metrics"]) == {"auc", "ndcg@10"}
    assert main(["evaluate", "--model", str(path), "--metrics", "auc,ndcg@10", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["final"] == again  # the final figures are those of the saved model
    history = BPR.load(path).history_  # and they are in its history, at the evaluated epochs
    assert [h.get("ndcg@10") for h in history] == [None] + record["metrics"]["ndcg@10"][:1] + \
        [again["ndcg@10"]]
    # The last epoch is evaluated once when it is a multiple of N; full AUC beside auc is named.
    assert main(["train", "--epochs", "4", "--seed", "0", "--metrics", "full_auc,auc",
                 "--eval-every", "2", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    record = json.loads(out[-1])
    assert record["evaluated_epochs"] == [2, 4] and record["auc"] == record["metrics"]["full_auc"]
    assert "Epoch   4/4: full_auc 0." in "\n".join(out) and out[-2].startswith("Final full_auc: ")


def test_train_times_evaluation_apart_from_training(movielens, monkeypatch, capsys):
    import time

    from bpr_numba import metrics

    # Warm: loading the compiled kernels must not count as training or evaluation here.
    assert main(["train", "--epochs", "1", "--metrics", "ndcg@10"]) == 0
    capsys.readouterr()
    real = metrics.evaluate

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics, "evaluate", slow)
    assert main(["train", "--epochs", "3", "--seed", "0", "--metrics", "ndcg@10",
                 "--eval-every", "0", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["evaluated_epochs"] == [3]
    assert 0.3 <= record["eval_seconds"] < 0.3 + 1.0  # one evaluation, the last epoch's
    assert record["train_seconds"] < 0.3 < record["total_seconds"] - record["train_seconds"]
    # The notebook's full AUC before training is an evaluation too.
    assert main(["train", "--epochs", "3", "--seed", "0", "--metrics", "full_auc",
                 "--eval-every", "0", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["evaluated_epochs"] == [3] and 0.6 <= record["eval_seconds"] < 0.6 + 1.0


GOWALLA_USERS, GOWALLA_ITEMS = 29858, 40981


@pytest.fixture
def small_gowalla(tmp_path, monkeypatch):
    """A folder holding gowalla/ with small train.txt and test.txt (their sums made the expected ones)."""
    import hashlib

    import numpy as np

    from bpr_numba.datasets import papers

    rng = np.random.default_rng(0)
    items = rng.choice(GOWALLA_ITEMS, 60, replace=False)
    files = {"train.txt": [], "test.txt": []}
    for user in [0, 1, 7, 500, GOWALLA_USERS - 1]:
        mine = rng.choice(items, 12, replace=False)
        files["train.txt"].append(" ".join(map(str, [user, *sorted(mine[:9])])))
        files["test.txt"].append(" ".join(map(str, [user, *sorted(mine[9:])])))
    folder = tmp_path / "data" / "gowalla"
    folder.mkdir(parents=True)
    sums = {}
    for name, lines in files.items():
        data = ("\n".join(lines) + "\n").encode()
        (folder / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(papers, "_GOWALLA_SHA256", sums)
    return ["--dataset", "gowalla", "--data-dir", str(tmp_path / "data"), "--no-download"]


def test_gowalla_trains_with_the_papers_metrics_and_recommends(small_gowalla, tmp_path, capsys):
    from bpr_numba.datasets import load_gowalla
    from bpr_numba.metrics import evaluate

    path = tmp_path / "model.npz"
    assert main(["train", *small_gowalla, "--epochs", "2", "--seed", "0", "--save", str(path),
                 "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Gowalla, the NGCF/LightGCN split (train.txt, test.txt): 45 train "
                             f"and 15 test positives, matrix {GOWALLA_USERS} x {GOWALLA_ITEMS}")
    text = "\n".join(out)
    assert "AUC before training" not in text and "Epoch   1/2: loss " in text
    assert "Epoch   2/2: recall@20 " in text and "Final recall@20: " in text
    record = json.loads(out[-1])
    assert record["evaluated_epochs"] == [2] and set(record["final"]) == {"recall@20", "ndcg@20"}
    train, test = load_gowalla(data_home=tmp_path / "data", download=False)
    direct = evaluate(BPR.load(path), test, train, metrics=("recall@20", "ndcg@20"))
    assert record["final"] == direct
    assert main(["evaluate", "--model", str(path), *small_gowalla, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == direct  # the same default
    # recommend: ids are rows from 0; what the user has in either file is filtered.
    assert main(["recommend", "--model", str(path), *small_gowalla, "--user", "0", "-n",
                 "50"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "Top 50 items for user 0 (12 liked items in train.txt or test.txt excluded):"
    shown = {int(line.split(".", 1)[1].split()[0]) for line in lines[1:]}
    assert len(shown) == 50 and not shown & (set(train[0].indices) | set(test[0].indices))
    assert main(["recommend", "--model", str(path), *small_gowalla, "--user",
                 str(GOWALLA_USERS)]) == 1
    assert f"Gowalla user id in 0..{GOWALLA_USERS - 1}" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--split", "u1"], "--split does not apply to gowalla: its split is the papers' own"),
    (["--min-rating", "4"], "--min-rating does not apply to gowalla: its check-ins have no"),
    (["--eval-every", "-1"], "--eval-every must be >= 0"),
    (["--metrics", "recall"], "--metrics: unknown metric 'recall'"),
    (["--metrics", " , "], "--metrics: metrics is empty"),
    (["--plot", "curve.png"], "--plot draws the full AUC of every epoch"),
    (["--plot", "curve.png", "--metrics", "full_auc", "--eval-every", "2"], "--eval-every 1"),
])
def test_train_refuses_options_that_do_not_apply(small_gowalla, extra, message, capsys):
    assert main(["train", *small_gowalla, "--epochs", "1", *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_metrics_are_refused_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for command in (["train"], ["evaluate", "--model", str(tmp_path / "none.npz")]):
        assert main([*command, "--dataset", "gowalla", "--data-dir", str(tmp_path),
                     "--no-download", "--metrics", "ndcg"]) == 1
        assert "--metrics: unknown metric 'ndcg'" in capsys.readouterr().err


def test_a_model_of_other_data_is_refused(movielens, small_gowalla, tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--epochs", "1", "--save", str(path)]) == 0
    capsys.readouterr()
    for command in (["evaluate"], ["recommend", "--user", "1"]):
        assert main([*command, "--model", str(path), *small_gowalla]) == 1
        assert ("the model was trained on other data: its users and items are not those of the "
                f"data given here (model 944 x 1683, data {GOWALLA_USERS} x {GOWALLA_ITEMS})"
                in capsys.readouterr().err)


def test_ctrl_c_reports_the_last_evaluated_epoch_and_saves_nothing(movielens, tmp_path,
                                                                   monkeypatch, capsys):
    real_fit = BPR.fit

    def fit_then_ctrl_c(self, *args, callbacks=(), **kwargs):
        def ctrl_c(epoch, record):
            if epoch == 3:
                raise KeyboardInterrupt  # as run_epochs raises once the epoch is finished
        return real_fit(self, *args, callbacks=[*callbacks, ctrl_c], **kwargs)

    monkeypatch.setattr(BPR, "fit", fit_then_ctrl_c)
    path = tmp_path / "model.npz"
    assert main(["train", "--epochs", "5", "--eval-every", "2", "--save", str(path),
                 "--json"]) == 130
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("Interrupted after 3 of 5 epochs (AUC: 0.")
    assert last.endswith(" after epoch 2); nothing saved.")
    assert "interrupted" in captured.err and not path.exists()

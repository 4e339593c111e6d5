"""The worker roles and the trainers that bench/peers.py and bench/quality.py drive.

Each role runs as its own subprocess, ``python bench/_workers.py ROLE JOB.json``,
under the interpreter that has the library it needs: ``--ours-python`` for
bpr-numba, data preparation and scoring, ``--peers-python`` for implicit,
LightFM and cornac (the peers' virtualenv has no bpr_numba,
/work/shared/PEERS.md). So this module imports only the standard library and
_common at the top; NumPy, SciPy and the libraries are imported inside the
functions that use them. Data passes through .npz files, so every library
trains on the very same CSR matrices.

Roles
-----
``prepare`` (ours-python): build the train/test CSR matrices and save them with
``scipy.sparse.save_npz`` (float32, sorted int32 indices).

* ``ml-100k``: ``load_movielens("100k", "ua", min_rating=4)`` (944 x 1683,
  49,906 train and 5,469 test positives; row 0 and column 0 are empty).
* ``synthetic``: ``make_synthetic(n_users, n_items, total, random_state=0)``,
  then ``holdout_split(X, 0.2, random_state=0)`` (default) or, with
  ``split="random"``, ``bpr_numba.split.random_split`` (per user). The job
  gives ``synthetic_shape`` (users, items, *train* interactions: total =
  train / 0.8) or ``synthetic_total`` (users, items, total).

``train`` (one worker per library, config and thread count): load the data,
warm up on a tiny matrix, then train ``epochs`` epochs and save the final
user/item factors. ``repeats`` runs with seed 0 (the first one's factors are
kept), or one run per seed of ``seeds`` (every run's factors kept), plus the
``lr_multipliers`` tuning runs. Epoch seconds are, per library:

* bpr-numba: ``model.fit(train)`` with ``epochs=E``; epoch seconds are
  ``history_[e]["seconds"]`` (the kernel calls plus the per-epoch finiteness
  check; small epochs, up to 250k samples' worth, are trained several to a
  kernel call and share its seconds equally, so their spread means little). The warm-up is two 1-epoch fits on a 300 x 200 matrix: the first
  one loads the cached kernel or compiles it ("first fit s"), the second is
  warm; "compile s" = first - second. A third fit on it, with 25 candidates in
  runs, loads or compiles the kernel of candidates in runs, which the tiny
  matrix's 3 candidates do not use and Gowalla's 43 or 50 do.
* implicit (``implicit.cpu.bpr.BayesianPersonalizedRanking``): one
  ``fit(train, callback=...)`` with ``iterations=E``; epoch seconds are the
  ``elapsed`` the callback receives (``time.time()`` around implicit's
  ``bpr_update`` only). Repeated ``fit(iterations=1)`` would continue the
  factors but re-seed the per-thread RNGs from ``random_state`` each call
  (same samples every epoch), so it is not used. Warm-up: a 2-epoch fit on
  a tiny matrix.
* LightFM: ``fit_partial(train_coo, epochs=1, num_threads=t)`` E times
  (COO is LightFM's input format; converted once, untimed). Epoch seconds
  time LightFM's ``_run_epoch`` (its shuffle, positives lookup and kernel);
  "fit wall" adds fit_partial's per-call input checks and feature matrices.
* cornac (``cornac.models.BPR``, ``seed=0``, which forces one thread, so it
  runs only at threads = 1): one ``fit`` with ``max_iter=E``; epoch seconds
  time each ``_fit_sgd`` call. Its ``Dataset`` is built directly from the
  CSR with identity id maps (untimed), so rows and columns stay aligned.
* popularity (ours-python): ``bpr_numba.baselines.Popularity().fit(train)``.

``evaluate`` (ours-python): the same functions for every library, on the
exported factors as a float32 ``(user_factors, item_factors)`` pair:
``bpr_numba.metrics.full_auc(pair, test)`` (the notebook's metric: train
positives count as negatives) and ``auc_score(pair, test, train)`` (train
positives removed), or with ``metrics`` (bench/quality.py) ``full_auc`` and
``metrics.evaluate(pair, test, train, metrics=...)``. Layouts exported:
bpr-numba and implicit already hold the item bias as the last item column
against a constant 1 user column (``factors + 1`` columns); LightFM gives
``U = [user_emb, 1]``, ``V = [item_emb, item_bias]`` (the user bias is
rank-irrelevant); cornac ``U = [u_factors, 1]``, ``V = [i_factors, i_biases]``.
With more users with a test positive than ``auc_users``, a seeded subsample of
them is scored (the same users for every library). ``popularity=True`` also
scores the Popularity baseline on those users.

What each library calls an epoch and a negative (they differ):

* bpr-numba: one pass over all positives in a cache-friendly shuffled order
  (blocks of users), a fresh negative each; default ``negatives="unseen"``
  (uniform among the user's unseen items, never skipped);
  ``negative_candidates=k`` trains on the highest scoring of k negatives.
* implicit: ``nnz`` draws *with replacement* of a random positive; the negative
  is the item of another random positive (popularity-weighted); when it is a
  positive of the user the sample is skipped (no update; "skipped" share).
  Plain SGD, ``regularization`` on every touched row.
* LightFM: one pass over the positives in shuffled order; the negative is the
  item of a random interaction (popularity-weighted), redrawn until it is not
  a positive. Per-parameter Adagrad (``learning_schedule="adagrad"``), no L2
  by default (``user_alpha = item_alpha = 0``). "warp" samples up to
  ``max_sampled=10`` negatives per positive until one violates the margin.
* cornac: like implicit, but the negative is uniform over all items.

Learning rates (``OURS_CONFIGS``, ``PEER_CONFIGS``) are each library's own
defaults (bpr-numba: the optimiser's, implicit 0.01, LightFM 0.05), except
cornac: its default 0.001 is far too small for 10 epochs, so it gets
implicit's 0.01 / 0.01 (the same SGD update).

``curve`` and ``rank`` (bench/gowalla.py, time to quality): ``curve`` trains one
recipe epoch by epoch (:func:`worker_curve`) and saves the factors after the
job's ``points`` checkpoint epochs (:func:`checkpoint_epochs`) with the
cumulative training seconds; ``rank`` (ours-python) scores those files with
``metrics.evaluate(pair, test, train, metrics=...)`` and deletes them.
``prepare`` also builds ``gowalla`` (``load_gowalla()``, the published split).

Driver side (any interpreter): :func:`run_worker` and :func:`prepare_data`.
Each worker writes its JSON answer to the job's ``out`` file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ is sys.path[0] already
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, log, maxrss_bytes, versions  # noqa: E402

HERE = Path(__file__).resolve()
SEED = 0
TEST_FRACTION = 0.2
ROLES = ("prepare", "train", "evaluate", "curve", "rank")
LIBRARIES = ("bpr-numba", "implicit", "lightfm", "cornac")

# bpr-numba configurations: label -> BPR keyword arguments (besides factors,
# epochs, num_threads, random_state). learning_rate=None: the optimiser's own.
OURS_CONFIGS = {
    "sgd": ("sgd, 1 neg.", {"optimizer": "sgd", "negative_candidates": 1}),
    "sgd-uniform": ("sgd, 1 uniform neg.", {"optimizer": "sgd", "negative_candidates": 1,
                                            "negatives": "uniform"}),
    "adagrad": ("adagrad, 1 neg.", {"optimizer": "adagrad", "negative_candidates": 1}),
    "adam": ("adam, 1 neg.", {"optimizer": "adam", "negative_candidates": 1}),
    "defaults": ("defaults (rowwise-adagrad, 3 neg.)", {}),
    "rowwise-adagrad": ("rowwise-adagrad, 1 neg.", {"optimizer": "rowwise-adagrad",
                                                    "negative_candidates": 1}),
    "adagrad-defaults": ("defaults with per-element adagrad (3 neg.)",
                         {"optimizer": "adagrad"}),
}
PEER_CONFIGS = {
    "implicit": [("bpr", {"learning_rate": 0.01, "regularization": 0.01}),
                 ("bpr-noverify", {"learning_rate": 0.01, "regularization": 0.01,
                                   "verify_negative_samples": False})],
    "lightfm": [("bpr", {"loss": "bpr", "learning_rate": 0.05}),
                ("warp", {"loss": "warp", "learning_rate": 0.05})],
    "cornac": [("bpr", {"learning_rate": 0.01, "lambda_reg": 0.01})],
}


# ------------------------------------------------------------------ driver side
def worker_env():
    env = dict(os.environ)
    env.setdefault("BPR_NUMBA_DATA", str(REPO.parent / "shared" / "data"))
    return env


def run_worker(python, role, job, job_path, timeout):
    """Run ``python _workers.py role job_path`` on ``job``; return its JSON answer or an error."""
    import subprocess

    job_path = Path(job_path)
    out_path = job_path.with_suffix(".out.json")
    job = dict(job, out=str(out_path))
    job_path.write_text(json.dumps(job, indent=1))
    start = time.perf_counter()
    try:
        proc = subprocess.run([python, str(HERE), role, str(job_path)],
                              env=worker_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": f"exit code {proc.returncode}: {tail}"}
    answer = json.loads(out_path.read_text())
    answer["process_wall_s"] = wall
    return answer


def prepare_data(python, data_dir, request):
    """Build (or reuse) ``data_dir/train.npz`` and ``test.npz`` with the ``prepare`` worker.

    ``request`` holds ``dataset`` and the worker's other keys; the data in
    ``data_dir`` is reused when it was built from the same request. Returns
    the worker's description of the data.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_path = data_dir / "meta.json"
    prepare = dict(request, data_dir=str(data_dir))
    name = prepare["dataset"]
    if meta_path.exists() and json.loads(meta_path.read_text()).get("request") == prepare:
        log(f"[{name}] reusing data in {data_dir}")
        return json.loads(meta_path.read_text())
    log(f"[{name}] preparing data ...")
    meta = run_worker(python, "prepare", prepare, data_dir / "prepare.json", None)
    if "error" in meta:
        raise SystemExit(f"preparing {name} failed: {meta['error']}")
    meta["request"] = prepare
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# ------------------------------------------------------------------ worker side
def worker_main(role, job):
    answer = {"prepare": worker_prepare, "train": worker_train,
              "evaluate": worker_evaluate, "curve": worker_curve,
              "rank": worker_rank}[role](job)
    answer["peak_rss_mb"] = maxrss_bytes() / 2**20
    Path(job["out"]).write_text(json.dumps(answer))
    return 0


def holdout_split(X, test_fraction, random_state):
    """``bpr_numba``'s holdout_split: in ``split`` once it moves there, else in ``datasets``."""
    try:
        from bpr_numba.split import holdout_split as split
    except ImportError:
        from bpr_numba.datasets import holdout_split as split
    return split(X, test_fraction, random_state=random_state)


def load_data(data_dir, which=("train", "test")):
    import scipy.sparse as sp

    return [sp.load_npz(Path(data_dir) / f"{name}.npz").tocsr() for name in which]


def worker_prepare(job):
    """Build the data set with bpr_numba (ours-python) and save CSR train/test."""
    import numpy as np
    import scipy.sparse as sp

    start = time.perf_counter()
    if job["dataset"] == "gowalla":
        from bpr_numba import load_gowalla

        train, test = load_gowalla()
        description = "Gowalla, the NGCF / LightGCN split (load_gowalla: train.txt, test.txt)"
        generation = {"files": "train.txt, test.txt", "split": "as published"}
    elif job["dataset"] == "ml-100k":
        from bpr_numba import load_movielens

        train, test = (m.tocsr() for m in load_movielens("100k", "ua", min_rating=4))
        description = "MovieLens 100k, split ua, ratings >= 4 (load_movielens)"
        generation = {"variant": "100k", "split": "ua", "min_rating": 4}
    else:
        # job["synthetic_shape"]: users, items and *train* interactions (total = train / 0.8),
        # or job["synthetic_total"]: users, items and the total generated (bench/quality.py).
        # job["split"]: "holdout" (datasets.holdout_split, default) or "random"
        # (split.random_split: per user, so every user with >= 3 positives is in test).
        from bpr_numba import make_synthetic

        if job.get("synthetic_total"):
            n_users, n_items, total = job["synthetic_total"]
        else:
            n_users, n_items, n_train = job["synthetic_shape"]
            total = int(round(n_train / (1 - TEST_FRACTION)))
        X = make_synthetic(n_users, n_items, total, random_state=SEED)
        split = job.get("split", "holdout")
        if split == "random":
            from bpr_numba.split import random_split

            train, test = (part.matrix for part in random_split(X, TEST_FRACTION,
                                                                random_state=SEED))
            how = f"split.random_split(X, {TEST_FRACTION}, random_state={SEED})"
        else:
            train, test = holdout_split(X, TEST_FRACTION, random_state=SEED)
            how = f"holdout_split(X, {TEST_FRACTION}, random_state={SEED})"
        description = f"make_synthetic({n_users}, {n_items}, {total}, random_state={SEED}), {how}"
        generation = {"n_users": n_users, "n_items": n_items, "n_interactions": total,
                      "test_fraction": TEST_FRACTION, "seed": SEED, "split": split}
    for name, m in (("train", train), ("test", test)):
        m = sp.csr_matrix(m, dtype=np.float32)
        m.sort_indices()
        sp.save_npz(Path(job["data_dir"]) / f"{name}.npz", m, compressed=False)
    return {"description": description, "generation": generation, "shape": list(train.shape),
            "train_nnz": int(train.nnz), "test_nnz": int(test.nnz),
            "index_dtype": str(train.indices.dtype), "seconds": time.perf_counter() - start}


def tiny_matrix(n_users=300, n_items=200, density=0.05):
    """A small seeded 0/1 CSR for warm-ups (NumPy/SciPy only: runs in any venv)."""
    import numpy as np
    import scipy.sparse as sp

    m = sp.random(n_users, n_items, density=density, format="csr", dtype=np.float32,
                  random_state=np.random.RandomState(SEED))
    m.data[:] = 1.0
    m.indices = m.indices.astype(np.int32)
    m.indptr = m.indptr.astype(np.int32)
    m.sort_indices()
    return m


def warm_runs(model):
    """Fit ``model`` (a 1-epoch BPR) on the tiny matrix with 25 candidates in runs: the
    kernel of candidates in runs, loaded or compiled; its seconds, or None for a recipe
    without runs (listwise losses, dense-adam, a pool, popularity negatives)."""
    start = time.perf_counter()
    try:
        model.set_params(negative_candidates=25, candidate_sampling="window").fit(
            tiny_matrix(), show_progress=False)
    except ValueError:
        return None
    return time.perf_counter() - start


def worker_train(job):
    import numpy as np

    (train,) = load_data(job["data_dir"], ("train",))
    trainer = {"bpr-numba": OursTrainer, "implicit": ImplicitTrainer,
               "lightfm": LightFMTrainer, "cornac": CornacTrainer,
               "popularity": PopularityTrainer}[job["library"]](job)
    warmup = trainer.warmup()
    base_lr = trainer.default_lr()
    seeds = job.get("seeds")
    if seeds:  # bench/quality.py: one main run per seed, every run's factors kept
        plan = [("main", base_lr, seed) for seed in seeds]
    else:
        plan = [("main", base_lr, SEED)] * job.get("repeats", 1)
    plan += [("tune", base_lr * m, SEED) for m in job.get("lr_multipliers", [])]
    runs = []
    for index, (kind, lr, seed) in enumerate(plan):
        record = {"kind": kind, "learning_rate": lr, "seed": seed}
        trainer.seed = seed
        try:
            record.update(trainer.train(train, lr))
        except Exception as exc:  # a diverged tuning run must not lose the others
            if kind == "main":
                raise
            record.update({"error": f"{type(exc).__name__}: {exc}", "epoch_seconds": [],
                           "factors_file": None})
            runs.append(record)
            continue
        user_factors, item_factors = record.pop("factors")
        if kind == "main" and not seeds and any(r["kind"] == "main" for r in runs):
            record["factors_file"] = None  # repeats: same seed, AUC of the first run only
        else:
            path = Path(job["factors_dir"]) / f"run{index}.npz"
            np.savez(path, user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
                     item_factors=np.ascontiguousarray(item_factors, dtype=np.float32))
            record["factors_file"] = str(path)
        runs.append(record)
    return {"runs": runs, "warmup": warmup, "versions": trainer.versions()}


class Trainer:
    """One library's warm-up, training and versions for a ``train`` job.

    ``default_lr()`` is the job's learning rate (the peers' configurations give
    one); ``train(train, lr)`` returns ``epoch_seconds``, ``fit_wall_s`` and
    ``factors`` (a ``(user_factors, item_factors)`` pair) at least; the driver
    sets ``seed`` before each run.
    """

    distribution = None  # the peer's package, for versions()

    def __init__(self, job):
        self.job = job
        self.seed = SEED

    def default_lr(self):
        return self.job["params"]["learning_rate"]

    def versions(self):
        out = versions(self.distribution, "numpy", "scipy")
        out["python"] = sys.version.split()[0]
        return out


class OursTrainer(Trainer):
    distribution = "bpr_numba"

    def model(self, lr, epochs, threads):
        from bpr_numba import BPR

        params = dict(self.job["params"])
        if params.pop("preset", None) == "keras":
            # BPR.keras_compatible(): its own factors (100), optimiser and learning rate.
            return BPR.keras_compatible(**params, epochs=epochs, num_threads=threads,
                                        random_state=self.seed,
                                        **({} if lr is None else {"learning_rate": lr}))
        return BPR(factors=self.job["factors"], **dict(params, learning_rate=lr),
                   epochs=epochs, num_threads=threads, random_state=self.seed)

    def default_lr(self):
        lr = self.job["params"].get("learning_rate")
        if lr is None and self.job["params"].get("preset") == "keras":
            from bpr_numba import BPR

            return BPR.keras_compatible().learning_rate
        if lr is None:
            from bpr_numba._training import DEFAULT_LEARNING_RATES  # private; the bench's only

            lr = DEFAULT_LEARNING_RATES[self.job["params"].get("optimizer", "adagrad")]
        return lr

    def warmup(self):
        tiny = tiny_matrix()
        times = []
        for _ in range(2):
            start = time.perf_counter()
            self.model(None, 1, self.job["threads"]).fit(tiny, show_progress=False)
            times.append(time.perf_counter() - start)
        # The tiny matrix resolves to 3 candidates, drawn independently; a recipe
        # that takes runs of candidates on the real data (25 or more) uses another
        # kernel, loaded or compiled here so that no timed epoch pays for it.
        runs_s = warm_runs(self.model(None, 1, self.job["threads"]))
        return {"first_fit_s": times[0], "second_fit_s": times[1],
                "compile_s": times[0] - times[1], "runs_fit_s": runs_s,
                "note": "first tiny fit loads the cached kernel or compiles it; runs_fit_s "
                        "that of candidates in runs"}

    def train(self, train, lr):
        model = self.model(lr, self.job["epochs"], self.job["threads"])
        start = time.perf_counter()
        model.fit(train, show_progress=False)
        wall = time.perf_counter() - start
        return {"epoch_seconds": [h["seconds"] for h in model.history_], "fit_wall_s": wall,
                "loss": [h["loss"] for h in model.history_],
                "factors": (model.user_factors, model.item_factors)}

    def versions(self):
        import numba

        out = dict(super().versions(), numba=numba.__version__)
        try:
            out["numba_threading_layer"] = numba.threading_layer()
        except ValueError:
            pass
        return out


class ImplicitTrainer(Trainer):
    distribution = "implicit"

    def model(self, lr, epochs):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.job["params"]
        return BayesianPersonalizedRanking(
            factors=self.job["factors"], learning_rate=lr, regularization=p["regularization"],
            iterations=epochs, num_threads=self.job["threads"], random_state=self.seed,
            verify_negative_samples=p.get("verify_negative_samples", True))

    def warmup(self):
        start = time.perf_counter()
        self.model(self.default_lr(), 2).fit(tiny_matrix(), show_progress=False)
        return {"first_fit_s": time.perf_counter() - start}

    def train(self, train, lr):
        import numpy as np

        model = self.model(lr, self.job["epochs"])
        epochs = []

        def callback(epoch, elapsed, correct, skipped):
            epochs.append((elapsed, int(correct), int(skipped)))

        start = time.perf_counter()
        model.fit(train, show_progress=False, callback=callback)
        wall = time.perf_counter() - start
        user_factors, item_factors = model.user_factors, model.item_factors
        if hasattr(user_factors, "to_numpy"):  # GPU matrices; CPU models hold ndarrays
            user_factors, item_factors = user_factors.to_numpy(), item_factors.to_numpy()
        return {"epoch_seconds": [e[0] for e in epochs], "fit_wall_s": wall,
                "skipped_share": float(np.mean([e[2] for e in epochs]) / train.nnz),
                "train_auc_proxy": [e[1] / max(train.nnz - e[2], 1) for e in epochs],
                "factors": (np.asarray(user_factors), np.asarray(item_factors))}


class LightFMTrainer(Trainer):
    distribution = "lightfm"

    def model(self, lr):
        from lightfm import LightFM

        return LightFM(no_components=self.job["factors"], loss=self.job["params"]["loss"],
                       learning_rate=lr, random_state=self.seed)

    def warmup(self):
        start = time.perf_counter()
        self.model(self.default_lr()).fit_partial(tiny_matrix().tocoo(), epochs=2,
                                                  num_threads=self.job["threads"])
        return {"first_fit_s": time.perf_counter() - start}

    def train(self, train, lr):
        import numpy as np

        coo = train.tocoo()  # LightFM's own input format, converted once (untimed)
        model = self.model(lr)
        epoch_seconds = []
        run_epoch = model._run_epoch  # timed through an instance attribute

        def timed_run_epoch(*a, **k):
            start = time.perf_counter()
            out = run_epoch(*a, **k)
            epoch_seconds.append(time.perf_counter() - start)
            return out

        model._run_epoch = timed_run_epoch
        wall = 0.0
        for _ in range(self.job["epochs"]):
            start = time.perf_counter()
            model.fit_partial(coo, epochs=1, num_threads=self.job["threads"])
            wall += time.perf_counter() - start
        item_biases, item_emb = model.get_item_representations()
        _, user_emb = model.get_user_representations()
        ones = np.ones((user_emb.shape[0], 1), dtype=np.float32)
        user_factors = np.hstack([user_emb.astype(np.float32), ones])
        item_factors = np.hstack([item_emb.astype(np.float32),
                                  item_biases.astype(np.float32)[:, None]])
        return {"epoch_seconds": epoch_seconds, "fit_wall_s": wall,
                "factors": (user_factors, item_factors)}


class CornacTrainer(Trainer):
    distribution = "cornac"

    def __init__(self, job):
        super().__init__(job)
        if job["threads"] != 1:
            raise ValueError("cornac runs with seed=0, which forces one thread")

    def model(self, lr, epochs):
        from cornac.models import BPR

        p = self.job["params"]
        return BPR(k=self.job["factors"], max_iter=epochs, learning_rate=lr,
                   lambda_reg=p["lambda_reg"], use_bias=True, seed=self.seed, verbose=False)

    def dataset(self, X):
        """A cornac Dataset with identity id maps, so factors align with X's rows/columns."""
        import numpy as np
        from cornac.data import Dataset

        coo = X.tocoo()
        n_users, n_items = X.shape
        return Dataset(n_users, n_items, {u: u for u in range(n_users)},
                       {i: i for i in range(n_items)},
                       (coo.row.astype(np.int64), coo.col.astype(np.int64),
                        coo.data.astype(np.float64)), seed=self.seed)

    def warmup(self):
        start = time.perf_counter()
        self.model(self.default_lr(), 2).fit(self.dataset(tiny_matrix()))
        return {"first_fit_s": time.perf_counter() - start}

    def train(self, train, lr):
        import numpy as np

        data = self.dataset(train)  # untimed
        model = self.model(lr, self.job["epochs"])
        epochs = []
        fit_sgd = model._fit_sgd

        def timed_fit_sgd(*a, **k):
            start = time.perf_counter()
            correct, skipped = fit_sgd(*a, **k)
            epochs.append((time.perf_counter() - start, int(skipped)))
            return correct, skipped

        model._fit_sgd = timed_fit_sgd
        start = time.perf_counter()
        model.fit(data)
        wall = time.perf_counter() - start
        ones = np.ones((model.u_factors.shape[0], 1), dtype=np.float32)
        user_factors = np.hstack([model.u_factors.astype(np.float32), ones])
        item_factors = np.hstack([model.i_factors.astype(np.float32),
                                  np.asarray(model.i_biases, dtype=np.float32)[:, None]])
        return {"epoch_seconds": [e[0] for e in epochs], "fit_wall_s": wall,
                "skipped_share": float(np.mean([e[1] for e in epochs]) / train.nnz),
                "factors": (user_factors, item_factors)}


class PopularityTrainer(OursTrainer):
    """bpr_numba.baselines.Popularity (ours-python): factors (ones, item counts).

    Deterministic: the seed is unused.
    """

    def default_lr(self):
        return None

    def warmup(self):
        return {}

    def train(self, train, lr):
        from bpr_numba.baselines import Popularity

        start = time.perf_counter()
        model = Popularity(**self.job["params"]).fit(train)
        wall = time.perf_counter() - start
        return {"epoch_seconds": [wall], "fit_wall_s": wall,
                "factors": (model.user_factors, model.item_factors)}



def load_factor_pair(path, users=None):
    """The float32 ``(user_factors, item_factors)`` a trainer saved (rows ``users`` only)."""
    import numpy as np

    with np.load(path) as f:
        user_factors, item_factors = f["user_factors"], f["item_factors"]
    if users is not None:
        user_factors = user_factors[users]
    return (np.ascontiguousarray(user_factors, dtype=np.float32),
            np.ascontiguousarray(item_factors, dtype=np.float32))

def worker_evaluate(job):
    """full_auc and auc_score of each saved factor pair (ours-python, bpr_numba.metrics)."""
    import numpy as np

    from bpr_numba.metrics import auc_score, evaluate, full_auc

    train, test = load_data(job["data_dir"])
    users = np.flatnonzero(np.diff(test.indptr))
    if job["auc_users"] and users.size > job["auc_users"]:
        rng = np.random.default_rng(SEED)
        users = np.sort(rng.choice(users, size=job["auc_users"], replace=False))
        train, test = train[users], test[users]
    else:
        users = None
    scores = []
    popularity = None
    if job.get("popularity"):
        # Reference: bpr_numba.baselines.Popularity on the whole train matrix (score = the
        # item's train count, what a bias-only model can reach), scored on the same users.
        from bpr_numba.baselines import Popularity

        baseline = Popularity().fit(load_data(job["data_dir"], ("train",))[0])
        pair = (np.ones((train.shape[0], 1), np.float32),
                np.ascontiguousarray(baseline.item_factors))
        popularity = {"full_auc": float(full_auc(pair, test)),
                      "auc": float(auc_score(pair, test, train))}
    for path in job["factors"]:
        if not path or not Path(path).exists():
            scores.append({})
            continue
        pair = load_factor_pair(path, users)
        try:
            if job.get("metrics"):  # bench/quality.py: full_auc without train, the rest with it
                score = {"full_auc": float(full_auc(pair, test))}
                score.update(evaluate(pair, test, train, metrics=job["metrics"]))
                scores.append(score)
            else:
                scores.append({"full_auc": float(full_auc(pair, test)),
                               "auc": float(auc_score(pair, test, train))})
        except ValueError as exc:  # e.g. non-finite factors of a diverged peer
            scores.append({"eval_error": str(exc)})
    n_scored = test.shape[0] if users is not None else np.count_nonzero(np.diff(test.indptr))
    return {"scores": scores, "popularity": popularity, "users_scored": int(n_scored)}


def checkpoint_epochs(epochs, points):
    """Epoch 1, then ``points - 1`` evenly spaced epochs ending at ``epochs`` (sorted)."""
    marks = {1, epochs} | {max(1, round(epochs * k / max(points - 1, 1)))
                           for k in range(1, points)}
    return sorted(m for m in marks if 1 <= m <= epochs)


def worker_curve(job):
    """Train one recipe epoch by epoch; save the factors at :func:`checkpoint_epochs`.

    ``library``: "bpr-numba" (``BPR`` or ``BPR.preset(params["preset"])`` with
    ``factors``, ``random_state=0``, ``num_threads``; ``fit`` of one epoch, then
    ``fit_partial(train, epochs=1)``), "implicit" (its defaults but factors,
    seed and threads; one ``fit`` of ``epochs`` iterations, the factors saved
    from its callback: repeated 1-iteration fits would re-seed its RNGs),
    "lightfm" (``fit_partial(coo, epochs=1)`` per epoch) or "popularity".
    Seconds are training calls only (perf_counter around fit/fit_partial;
    implicit: the per-iteration ``elapsed`` its callback gets), after warm-up
    fits on a tiny matrix (bpr-numba: the recipe's, and one with candidates in
    runs, so no timed epoch compiles or loads a kernel); saving the factors is outside them. ``epochs`` None:
    the recipe's own (bpr-numba) count.
    """
    import numpy as np

    (train,) = load_data(job["data_dir"], ("train",))
    library, params, threads = job["library"], dict(job["params"]), job["threads"]
    marks = set()  # filled once the recipe's epoch count is known
    points, cumulative = [], [0.0]
    out_dir = Path(job["factors_dir"])

    def save(epoch, user_factors, item_factors, extra=None):
        path = out_dir / f"epoch{epoch}.npz"
        np.savez(path, user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
                 item_factors=np.ascontiguousarray(item_factors, dtype=np.float32))
        points.append(dict(extra or {}, epoch=epoch, train_seconds=cumulative[0],
                           factors_file=str(path)))

    info = {}
    if library == "bpr-numba":
        from bpr_numba import BPR

        preset = params.pop("preset", None)
        kwargs = dict({"factors": job["factors"], "random_state": SEED}, **params,
                      num_threads=threads)
        model = BPR.preset(preset, **kwargs) if preset else BPR(**kwargs)
        epochs = job.get("epochs") or model.epochs
        marks.update(checkpoint_epochs(epochs, job["points"]))
        info["params"] = {k: v for k, v in model.get_params().items()}
        info["params"]["epochs"] = epochs
        warm = BPR(**dict(info["params"], epochs=1))
        start = time.perf_counter()
        warm.fit(tiny_matrix(), show_progress=False)
        # The tiny matrix's 3 candidates are drawn independently: warm the kernel
        # of candidates in runs too (Gowalla's 43 or 50 use it).
        warm_runs(BPR(**dict(info["params"], epochs=1)))
        info["warmup_s"] = time.perf_counter() - start
        model.set_params(epochs=1)
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            if epoch == 1:
                model.fit(train, show_progress=False)
            else:
                model.fit_partial(train, epochs=1)
            cumulative[0] += time.perf_counter() - start
            if epoch in marks or epoch == epochs:
                save(epoch, model.user_factors, model.item_factors,
                     {"loss": model.history_[-1].get("loss")})
        info["epoch_seconds"] = [h["seconds"] for h in model.history_]
        info["bpr_numba_file"] = sys.modules["bpr_numba"].__file__
    elif library == "implicit":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        kwargs = dict({"factors": job["factors"], "random_state": SEED}, **params,
                      num_threads=threads)
        epochs = job.get("epochs") or 100
        marks.update(checkpoint_epochs(epochs, job["points"]))
        model = BayesianPersonalizedRanking(**dict(kwargs, iterations=epochs))
        info["params"] = dict(kwargs, iterations=epochs, learning_rate=model.learning_rate,
                              regularization=model.regularization)
        start = time.perf_counter()
        BayesianPersonalizedRanking(**dict(kwargs, iterations=2)).fit(tiny_matrix(),
                                                                        show_progress=False)
        info["warmup_s"] = time.perf_counter() - start
        elapsed = []

        def callback(epoch, seconds, correct, skipped):
            elapsed.append(seconds)
            cumulative[0] += seconds
            if epoch + 1 in marks or epoch + 1 == epochs:
                save(epoch + 1, model.user_factors, model.item_factors,
                     {"skipped_share": int(skipped) / train.nnz})

        start = time.perf_counter()
        model.fit(train, show_progress=False, callback=callback)
        info["fit_wall_s"] = time.perf_counter() - start
        info["epoch_seconds"] = elapsed
        # The callback's arrays are the model's own (trained in place): the last save
        # must equal the fitted factors.
        with np.load(points[-1]["factors_file"]) as f:
            info["last_checkpoint_is_final"] = bool(
                np.array_equal(f["item_factors"], np.asarray(model.item_factors)))
    elif library == "lightfm":
        from lightfm import LightFM

        kwargs = dict({"no_components": job["factors"], "random_state": SEED}, **params)
        epochs = job.get("epochs") or 30
        marks.update(checkpoint_epochs(epochs, job["points"]))
        model = LightFM(**kwargs)
        info["params"] = dict(kwargs, learning_rate=model.learning_rate, epochs=epochs,
                              num_threads=threads)
        start = time.perf_counter()
        LightFM(**kwargs).fit_partial(tiny_matrix().tocoo(), epochs=2, num_threads=threads)
        info["warmup_s"] = time.perf_counter() - start
        coo = train.tocoo()  # LightFM's input format, converted once (untimed)
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            model.fit_partial(coo, epochs=1, num_threads=threads)
            cumulative[0] += time.perf_counter() - start
            if epoch in marks or epoch == epochs:
                item_biases, item_emb = model.get_item_representations()
                _, user_emb = model.get_user_representations()
                ones = np.ones((user_emb.shape[0], 1), dtype=np.float32)
                save(epoch, np.hstack([user_emb.astype(np.float32), ones]),
                     np.hstack([item_emb.astype(np.float32),
                                item_biases.astype(np.float32)[:, None]]))
    elif library == "popularity":
        from bpr_numba.baselines import Popularity

        epochs = 0
        start = time.perf_counter()
        model = Popularity(**params).fit(train)
        cumulative[0] = time.perf_counter() - start
        info["params"] = params
        save(0, model.user_factors, model.item_factors)
    else:
        raise ValueError(f"unknown library {library!r}")
    distribution = {"bpr-numba": "bpr_numba", "popularity": "bpr_numba"}.get(library, library)
    info["versions"] = dict(versions(distribution, "numpy", "scipy", "numba"),
                            python=sys.version.split()[0])
    return dict(info, epochs=epochs, points=points, train_seconds=cumulative[0])


def worker_rank(job):
    """``metrics.evaluate(pair, test, train, metrics=job["metrics"])`` of each factor file
    (ours-python), deleting the file after; ``eval_users`` > 0 scores a seeded subsample."""
    import numpy as np

    from bpr_numba.metrics import evaluate

    train, test = load_data(job["data_dir"])
    users = np.flatnonzero(np.diff(test.indptr))
    if job.get("eval_users") and users.size > job["eval_users"]:
        users = np.sort(np.random.default_rng(SEED).choice(users, job["eval_users"],
                                                           replace=False))
        train, test = train[users], test[users]
    else:
        users = None
    scores = []
    for path in job["factors"]:
        pair = load_factor_pair(path, users)
        start = time.perf_counter()
        try:
            score = {k: float(v) for k, v in evaluate(pair, test, train,
                                                       metrics=job["metrics"]).items()}
        except ValueError as exc:  # e.g. non-finite factors
            score = {"eval_error": str(exc)}
        score["eval_seconds"] = time.perf_counter() - start
        scores.append(score)
        if not job.get("keep"):
            Path(path).unlink(missing_ok=True)
    return {"scores": scores, "users_scored": int(np.count_nonzero(np.diff(test.indptr)))}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ROLES:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(__doc__.split("\n")[0] + f"\n\nusage: python bench/_workers.py {{{','.join(ROLES)}}} "
              "JOB.json\n(run by bench/peers.py, bench/quality.py and bench/gowalla.py, "
              "not by hand)",
              file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return worker_main(argv[0], json.loads(Path(argv[1]).read_text()))


if __name__ == "__main__":
    sys.exit(main())

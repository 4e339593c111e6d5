"""Keras 3 (torch backend) port of the 2016 Keras notebook "triplet loss BPR on MovieLens 100k".

This is the reference that bpr-numba's Keras mode is compared with. It needs no part of bpr_numba:
it runs in the peers' virtualenv (numpy, scikit-learn, keras, torch).

What the notebook did, kept here:
- data: ml-100k ``ua.base`` (train) and ``ua.test`` (test); ratings >= 4 are positives; both
  matrices have shape (max user id + 1, max item id + 1) over the two files, i.e. (944, 1683), so
  row 0 and column 0 are empty;
- model: a user Embedding(n_users, 100) and ONE item Embedding(n_items, 100) shared by the positive
  and the negative input, both initialised uniform(-0.05, 0.05) (the Keras default); the model's
  output is the per-sample loss ``1 - sigmoid(u.p - u.n)``, compiled with an identity loss (the mean
  over the batch);
- training: Adam (learning rate 0.001), batch_size 64, shuffle=True; each epoch is one pass over all
  training positives with fresh negatives drawn uniformly over all items [0, n_items) (item 0 and
  the user's own positives included);
- metric: "full AUC", printed before training and after every epoch: for each user with at least one
  test positive, score all items, take scikit-learn's roc_auc_score with the test positives as
  labels (train positives count as negatives), and average over those users.

What differs from 2016: Keras 3 API (a Lambda layer instead of ``merge(mode=...)``), Adam's epsilon
defaults to Keras 3's 1e-7 (Keras 1 used 1e-8; see --epsilon), and the data are read from local
files instead of being downloaded.

Usage (in the peers' virtualenv):
    BPR_NUMBA_DATA=/work/shared/data python bench/keras_notebook.py --epochs 20 --seed 0 --json

Timing: "seconds" is the wall time of drawing the negatives plus ``model.fit`` (the AUC is timed
apart). With a fixed --seed the AUCs do not depend on --threads. When other processes load the
cores, torch's 2 intra-op threads spin and one epoch can take 10-40x longer (seen: 65-139 s instead
of ~3-5 s); compare "cpu_seconds", or use --threads 1, on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

LATENT_DIM = 100
BATCH_SIZE = 64


def load_ml100k_ua(data_dir):
    """Return (train, test) as dense bool arrays of shape (max uid + 1, max iid + 1).

    Ratings >= 4 are positives; the shape is taken over both files, as the notebook did.
    """
    base_dir = os.path.join(data_dir, "ml-100k")
    raw = []
    for name in ("ua.base", "ua.test"):
        path = os.path.join(base_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: set BPR_NUMBA_DATA to the folder that holds ml-100k/"
            )
        # columns: user id, item id, rating, timestamp (tab separated)
        raw.append(np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2))
    n_users = int(max(a[:, 0].max() for a in raw)) + 1
    n_items = int(max(a[:, 1].max() for a in raw)) + 1
    mats = []
    for a in raw:
        mat = np.zeros((n_users, n_items), dtype=bool)
        pos = a[a[:, 2] >= 4]
        mat[pos[:, 0], pos[:, 1]] = True
        mats.append(mat)
    return mats[0], mats[1]


def identity_loss(y_true, y_pred):
    """The notebook's loss: the model already outputs the per-sample loss; average it."""
    from keras import ops

    return ops.mean(y_pred - 0 * y_true)


def bpr_triplet_loss(inputs):
    """Per-sample ``1 - sigmoid(u.p - u.n)``, with x computed as two dot products."""
    from keras import ops

    user_latent, positive_item_latent, negative_item_latent = inputs
    x = ops.sum(user_latent * positive_item_latent, axis=-1, keepdims=True) - ops.sum(
        user_latent * negative_item_latent, axis=-1, keepdims=True
    )
    return 1.0 - ops.sigmoid(x)


def build_model(n_users, n_items, latent_dim, learning_rate, epsilon):
    import keras
    from keras import layers

    user_input = keras.Input((1,), name="user_input", dtype="int32")
    positive_item_input = keras.Input((1,), name="positive_item_input", dtype="int32")
    negative_item_input = keras.Input((1,), name="negative_item_input", dtype="int32")

    init = keras.initializers.RandomUniform(-0.05, 0.05)  # Keras' default "uniform"
    user_embedding = layers.Embedding(
        n_users, latent_dim, embeddings_initializer=init, name="user_embedding"
    )
    # One item embedding layer shared by the positive and the negative item.
    item_embedding = layers.Embedding(
        n_items, latent_dim, embeddings_initializer=init, name="item_embedding"
    )

    user_latent = layers.Flatten()(user_embedding(user_input))
    positive_item_latent = layers.Flatten()(item_embedding(positive_item_input))
    negative_item_latent = layers.Flatten()(item_embedding(negative_item_input))

    loss = layers.Lambda(bpr_triplet_loss, output_shape=(1,), name="loss")(
        [user_latent, positive_item_latent, negative_item_latent]
    )
    model = keras.Model(
        inputs=[user_input, positive_item_input, negative_item_input], outputs=loss
    )
    model.compile(
        loss=identity_loss,
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, epsilon=epsilon),
    )
    return model


def full_auc(user_factors, item_factors, test):
    """Mean over users with >= 1 test positive of roc_auc_score over all items (train positives
    count as negatives), as the notebook's ``metrics.full_auc``."""
    from sklearn.metrics import roc_auc_score

    scores = user_factors @ item_factors.T
    aucs = [
        roc_auc_score(test[u], scores[u]) for u in range(test.shape[0]) if test[u].any()
    ]
    return float(np.mean(aucs))


def model_auc(model, test):
    user_factors = model.get_layer("user_embedding").get_weights()[0]
    item_factors = model.get_layer("item_embedding").get_weights()[0]
    return full_auc(user_factors, item_factors, test)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=(
            "Keras 3 (torch backend) port of the 2016 notebook 'triplet loss BPR on MovieLens "
            "100k': ua.base/ua.test, ratings >= 4, 100 factors, 1 - sigmoid loss, Adam, batch 64. "
            "Reads $BPR_NUMBA_DATA/ml-100k/."
        )
    )
    parser.add_argument("--epochs", type=int, default=20, help="number of epochs (default 20)")
    parser.add_argument(
        "--seed", type=int, default=None,
        help="seed for the initialisation, the shuffling and the negatives (default: unseeded)",
    )
    parser.add_argument(
        "--epsilon", type=float, default=1e-7,
        help="Adam's epsilon (default 1e-7, Keras 3's; the 2016 Keras used 1e-8)",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=0.001, help="Adam's learning rate (default 0.001)"
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch.set_num_threads(N) (default: torch's own choice)",
    )
    parser.add_argument(
        "--data-dir", default=None,
        help="folder that holds ml-100k/ (default: $BPR_NUMBA_DATA)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print a final JSON line with the AUC and the seconds of every epoch",
    )
    args = parser.parse_args(argv)
    if args.epochs < 0:
        parser.error("--epochs must be >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.data_dir is None:
        args.data_dir = os.environ.get("BPR_NUMBA_DATA")
        if not args.data_dir:
            parser.error("set BPR_NUMBA_DATA (or pass --data-dir) to the folder holding ml-100k/")
    return args


def main(argv=None):
    t_start = time.perf_counter()
    args = parse_args(argv)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    import keras

    if keras.backend.backend() != "torch":
        print(
            f"warning: Keras backend is {keras.backend.backend()!r}, not 'torch'", file=sys.stderr
        )
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)  # python, numpy, torch and Keras' own seed
    rng = np.random.default_rng(args.seed)  # the negatives

    train, test = load_ml100k_ua(args.data_dir)
    n_users, n_items = train.shape
    train_users, train_items = np.nonzero(train)  # row-major, like the notebook's COO
    n_train = train_users.shape[0]
    n_test_users = int(test.any(axis=1).sum())
    print(
        f"ml-100k ua: shape {train.shape}, {n_train} train / {int(test.sum())} test positives, "
        f"{n_test_users} users with a test positive"
    )
    print(
        f"keras {keras.__version__} ({keras.backend.backend()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Adam(lr={args.learning_rate}, "
        f"epsilon={args.epsilon}), batch {BATCH_SIZE}, seed {args.seed}"
    )

    model = build_model(n_users, n_items, LATENT_DIM, args.learning_rate, args.epsilon)

    t0 = time.perf_counter()
    auc_before = model_auc(model, test)
    eval_seconds = [time.perf_counter() - t0]
    print(f"AUC before training {auc_before:.6f}")

    aucs, seconds, cpu_seconds = [], [], []
    user_in = train_users.astype(np.int32).reshape(-1, 1)
    pos_in = train_items.astype(np.int32).reshape(-1, 1)
    y = np.ones((n_train, 1), dtype=np.float32)
    for epoch in range(1, args.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        # Fresh uniform negatives over all items, one per training positive.
        neg_in = rng.integers(0, n_items, size=n_train).astype(np.int32).reshape(-1, 1)
        history = model.fit(
            {"user_input": user_in, "positive_item_input": pos_in, "negative_item_input": neg_in},
            y,
            batch_size=BATCH_SIZE,
            epochs=1,
            verbose=0,
            shuffle=True,
        )
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
        t0 = time.perf_counter()
        aucs.append(model_auc(model, test))
        eval_seconds.append(time.perf_counter() - t0)
        loss = float(history.history["loss"][-1])
        print(
            f"Epoch {epoch}: AUC {aucs[-1]:.6f}  loss {loss:.6f}  "
            f"({seconds[-1]:.2f} s, CPU {cpu_seconds[-1]:.2f} s)"
        )

    if args.json:
        print(json.dumps({
            "script": "keras_notebook",
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seed": args.seed,
            "epsilon": args.epsilon,
            "learning_rate": args.learning_rate,
            "batch_size": BATCH_SIZE,
            "factors": LATENT_DIM,
            "shape": [n_users, n_items],
            "n_train": n_train,
            "n_test": int(test.sum()),
            "epochs": args.epochs,
            "auc_before": auc_before,
            "auc": aucs,  # after each epoch
            "seconds": seconds,  # per epoch: negatives + model.fit, without the AUC
            "cpu_seconds": cpu_seconds,  # this process's CPU time (all threads) for the same span
            "eval_seconds": eval_seconds,  # the AUC before training, then after each epoch
            "total_seconds": time.perf_counter() - t_start,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

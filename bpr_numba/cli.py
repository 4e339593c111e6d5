"""Command line: ``bpr-numba train | evaluate | recommend``.

Parse, call the library, print. Exit codes: 0 success, 1 data or value
errors (one line; ``--debug`` shows the traceback), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="bpr-numba",
        description="Fast BPR (triplet loss) recommenders on the CPU with Numba.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train on MovieLens and print full AUC per epoch")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", default="ml-100k", choices=["ml-100k"],
                      help="dataset (default: ml-100k)")
    data.add_argument("--split", default="ua", help="ua, ub or u1..u5 (default: ua)")
    data.add_argument("--min-rating", type=int, default=4,
                      help="ratings >= this are positives (default: 4)")
    data.add_argument("--data-dir", default=None,
                      help="folder holding ml-100k/ or ml-100k.zip "
                           "(default: $BPR_NUMBA_DATA, then the download cache)")
    data.add_argument("--no-download", action="store_true",
                      help="never download; fail when no local copy is found")
    model = train.add_argument_group("model (defaults: the fast mode)")
    model.add_argument("--keras", action="store_true",
                       help="the 2016 Keras notebook's recipe: factors 100, loss sigmoid, "
                            "dense Adam (lr 0.001), batches of 64; 10 epochs unless --epochs")
    model.add_argument("--epochs", type=int, default=None, help="passes over the data (default: 10)")
    model.add_argument("--factors", type=int, default=None, help="factors (default: 64; --keras: 100)")
    model.add_argument("--loss", choices=["bpr", "sigmoid"], default=None)
    model.add_argument("--optimizer", choices=["adagrad", "adam", "sgd", "dense-adam"], default=None)
    model.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    model.add_argument("--reg", type=float, default=None, help="L2 regularization")
    model.add_argument("--negatives", choices=["uniform", "unseen"], default=None)
    model.add_argument("--batch-size", type=int, default=None, help="dense-adam batch size")
    model.add_argument("--threads", type=int, default=0, help="threads (default: 0 = all cores)")
    model.add_argument("--seed", type=int, default=None, help="random seed")
    out = train.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print one JSON object with the results as the last line")
    out.add_argument("--save", metavar="PATH", default=None, help="save the trained model (.npz)")
    out.add_argument("--plot", metavar="PNG", default=None,
                     help="draw the per-epoch AUC and loss curve (needs matplotlib: "
                          "pip install 'bpr-numba[plot]')")

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model on MovieLens")
    evaluate.add_argument("--model", required=True, help="model file written by train --save")
    _add_data_options(evaluate)
    evaluate.add_argument("--metrics", default="full_auc,auc,precision@10,recall@10,ndcg@10",
                          help="comma-separated: full_auc, auc, precision@k, recall@k, ndcg@k, "
                               "map@k, mrr (train items excluded except for full_auc)")
    evaluate.add_argument("--threads", type=int, default=0)
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")

    recommend = sub.add_parser("recommend", help="recommend movies to a user with a saved model")
    recommend.add_argument("--model", required=True, help="model file written by train --save")
    _add_data_options(recommend)
    recommend.add_argument("--user", type=int, required=True, help="MovieLens user id (1..943)")
    recommend.add_argument("-n", type=int, default=10, help="how many movies (default 10)")
    recommend.add_argument("--include-seen", action="store_true",
                           help="do not filter the movies the user rated in the train split")
    return parser


def _add_data_options(parser):
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k"])
    parser.add_argument("--split", default="ua", help="ua, ub or u1..u5 (default: ua)")
    parser.add_argument("--min-rating", type=int, default=4)
    parser.add_argument("--data-dir", default=None,
                        help="folder holding ml-100k/ or ml-100k.zip")
    parser.add_argument("--no-download", action="store_true")


def _model_from_args(args):
    from .estimator import BPR

    overrides = {}
    for option, param in (("factors", "factors"), ("loss", "loss"), ("optimizer", "optimizer"),
                          ("lr", "learning_rate"), ("reg", "regularization"),
                          ("negatives", "negatives"), ("batch_size", "batch_size")):
        value = getattr(args, option)
        if value is not None:
            overrides[param] = value
    overrides["epochs"] = 10 if args.epochs is None else args.epochs
    overrides["num_threads"] = args.threads
    overrides["random_state"] = args.seed
    if args.keras:
        return BPR.keras_compatible(**overrides)
    return BPR(**overrides)


def _train(args, start):
    from .metrics import full_auc

    model = _model_from_args(args)
    train, test = _load_data(args)
    print(f"MovieLens 100k, split {args.split}, ratings >= {args.min_rating} as positives: "
          f"{train.nnz:,} train and {test.nnz:,} test positives, matrix {train.shape[0]} x "
          f"{train.shape[1]}")
    model.initialize(*train.shape)
    n_user_params, n_item_params = model.n_parameters
    mode = "Keras-compatible" if args.keras else "fast"
    print(f"Model ({mode} mode): {model!r}")
    print(f"  user factors: {n_user_params:>10,} parameters")
    print(f"  item factors: {n_item_params:>10,} parameters"
          + (" (incl. item bias)" if model.item_bias else ""))
    print(f"  total:        {n_user_params + n_item_params:>10,} parameters")

    eval_seconds = 0.0
    t = time.perf_counter()
    auc_before = full_auc(model, test, num_threads=args.threads)
    eval_seconds += time.perf_counter() - t
    print(f"AUC before training: {auc_before:.4f}")
    aucs = []
    train_seconds = 0.0
    n_epochs = model.get_params()["epochs"]
    for epoch in range(1, n_epochs + 1):
        t = time.perf_counter()
        model.fit_partial(train, epochs=1)
        seconds = time.perf_counter() - t
        train_seconds += seconds
        t = time.perf_counter()
        auc = full_auc(model, test, num_threads=args.threads)
        eval_seconds += time.perf_counter() - t
        aucs.append(auc)
        loss = model.history_[-1]["loss"]
        print(f"Epoch {epoch:>3}/{n_epochs}: AUC {auc:.4f}  loss {loss:.4f}  {seconds:.2f} s")
    print(f"Final AUC: {aucs[-1]:.4f} after {n_epochs} epochs "
          f"({train_seconds:.2f} s training, {eval_seconds:.2f} s evaluation)")
    if args.save:
        model.save(args.save)
        print(f"Saved the model to {args.save}")
    if args.plot:
        _plot(args.plot, aucs, [h["loss"] for h in model.history_], auc_before)
        print(f"Drew the learning curve in {args.plot}")
    if args.json:
        print(json.dumps({
            "auc_before": auc_before, "auc": aucs, "final_auc": aucs[-1],
            "train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "total_seconds": time.perf_counter() - start,
        }))
    return 0


def _plot(path, aucs, losses, auc_before):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install 'bpr-numba[plot]' "
            "(or pip install matplotlib)."
        ) from None
    epochs = list(range(len(aucs) + 1))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [auc_before] + list(aucs), marker="o", color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("full AUC (test)", color="tab:blue")
    other = ax.twinx()
    other.plot(epochs[1:], losses, marker="s", color="tab:red")
    other.set_ylabel("mean training loss", color="tab:red")
    ax.set_title("bpr-numba on MovieLens 100k")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load_data(args):
    from .datasets import load_movielens

    train, test = load_movielens("100k", split=args.split, min_rating=args.min_rating,
                                 data_home=args.data_dir, download=not args.no_download)
    return train.tocsr(), test.tocsr()


def _evaluate(args):
    from .estimator import BPR
    from .metrics import evaluate

    model = BPR.load(args.model)
    train, test = _load_data(args)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    results = evaluate(model, test, train, metrics=names, num_threads=args.threads)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.model} on MovieLens 100k split {args.split} "
              f"({test.nnz:,} test positives; train items excluded except for full_auc):")
        for name, value in results.items():
            print(f"  {name:<14} {value:.4f}")
    return 0


def _recommend(args):
    from .datasets import load_movielens_titles
    from .estimator import BPR

    model = BPR.load(args.model)
    train, _ = _load_data(args)
    if not 1 <= args.user < model.n_users:
        raise ValueError(f"--user must be a MovieLens user id in 1..{model.n_users - 1}; "
                         f"got {args.user}.")
    titles = load_movielens_titles(data_home=args.data_dir, download=not args.no_download)
    # Column 0 is not a movie (ids start at 1): never recommend it.
    ids, scores = model.recommend(args.user, train, N=args.n,
                                  filter_already_liked_items=not args.include_seen,
                                  filter_items=[0])
    seen = train[args.user].nnz
    print(f"Top {len(ids)} movies for user {args.user} "
          f"({seen} liked movies in the train split{' shown too' if args.include_seen else ' excluded'}):")
    for rank, (item, score) in enumerate(zip(ids, scores), start=1):
        if item < 0:
            break
        print(f"{rank:>3}. {titles[item]}  (id {item}, score {score:.3f})")
    return 0


def main(argv=None):
    """Entry point of the ``bpr-numba`` command; returns the exit code."""
    start = time.perf_counter()
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args, start)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "recommend":
            return _recommend(args)
    except (ValueError, TypeError, OSError, IndexError) as exc:
        if args.debug:
            raise
        print(f"bpr-numba: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bpr-numba: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

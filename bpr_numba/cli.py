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
    return parser


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
    from .datasets import load_movielens
    from .metrics import full_auc

    model = _model_from_args(args)
    train, test = load_movielens("100k", split=args.split, min_rating=args.min_rating,
                                 data_home=args.data_dir, download=not args.no_download)
    print(f"MovieLens 100k, split {args.split}, ratings >= {args.min_rating} as positives: "
          f"{train.nnz:,} train and {test.nnz:,} test positives, matrix {train.shape[0]} x "
          f"{train.shape[1]}")
    train = train.tocsr()
    test = test.tocsr()
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
    if args.json:
        print(json.dumps({
            "auc_before": auc_before, "auc": aucs, "final_auc": aucs[-1],
            "train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "total_seconds": time.perf_counter() - start,
        }))
    return 0


def main(argv=None):
    """Entry point of the ``bpr-numba`` command; returns the exit code."""
    start = time.perf_counter()
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args, start)
    except (ValueError, TypeError, OSError, IndexError) as exc:
        if args.debug:
            raise
        print(f"bpr-numba: error: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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

    train = sub.add_parser("train", help="train on MovieLens, Gowalla or a CSV file and print "
                                         "full AUC (Gowalla: Recall@20, NDCG@20)")
    _add_data_options(train.add_argument_group("data"))
    model = train.add_argument_group("model (defaults: the fast mode)")
    model.add_argument("--keras", action="store_true",
                       help="the 2016 Keras notebook's recipe: factors 100, loss sigmoid, "
                            "dense Adam (lr 0.001), batches of 64; 10 epochs unless --epochs "
                            "(the same as --preset keras)")
    model.add_argument("--preset", choices=["fast", "quality", "keras"], default=None,
                       help="a named recipe (BPR.preset): fast (the defaults), quality (100 "
                            "epochs of Adagrad, more regularization, candidates scaled to the "
                            "catalogue), keras; the options below override it")
    model.add_argument("--epochs", type=int, default=None, help="passes over the data (default: 10)")
    model.add_argument("--factors", type=int, default=None, help="factors (default: 64; --keras: 100)")
    model.add_argument("--loss", choices=["bpr", "sigmoid"], default=None)
    model.add_argument("--optimizer", choices=["rowwise-adagrad", "adagrad", "adam", "sgd",
                                                         "dense-adam"], default=None)
    model.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    model.add_argument("--reg", type=float, default=None, help="L2 regularization")
    model.add_argument("--negatives", choices=["uniform", "unseen", "popularity"], default=None)
    model.add_argument("--batch-size", type=int, default=None, help="dense-adam batch size")
    model.add_argument("--threads", type=int, default=0, help="threads (default: 0 = all cores)")
    model.add_argument("--seed", type=int, default=None,
                       help="random seed of the model (default: none) and of random and "
                            "leave-k-out splits (default: 0)")
    out = train.add_argument_group("output")
    out.add_argument("--metrics", default=None,
                     help="comma-separated metrics on the test split, as for evaluate "
                          "(default: full_auc; gowalla: recall@20,ndcg@20, the papers' protocol)")
    out.add_argument("--eval-every", type=int, default=None, metavar="N",
                     help="evaluate after every N-th epoch and after the last; 0: after the "
                          "last only (default: 1; gowalla: 0, as an evaluation of its 29,858 "
                          "users takes a few seconds)")
    out.add_argument("--json", action="store_true",
                     help="print one JSON object with the results as the last line")
    out.add_argument("--save", metavar="PATH", default=None, help="save the trained model (.npz)")
    out.add_argument("--plot", metavar="PNG", default=None,
                     help="draw the per-epoch AUC and loss curve (needs matplotlib: "
                          "pip install 'bpr-numba[plot]')")

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model on its data's test split")
    evaluate.add_argument("--model", required=True, help="model file written by train --save")
    _add_data_options(evaluate)
    evaluate.add_argument("--seed", type=int, default=None,
                          help="seed of a random or leave-k-out split, as given to train "
                               "(default: 0, train's default for splits)")
    evaluate.add_argument("--metrics", default=None,
                          help="comma-separated: full_auc, auc, precision@k, recall@k, ndcg@k, "
                               "map@k, mrr (train items excluded except for full_auc; default: "
                               "full_auc,auc,precision@10,recall@10,ndcg@10; gowalla: "
                               "recall@20,ndcg@20)")
    evaluate.add_argument("--threads", type=int, default=0)
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")

    recommend = sub.add_parser("recommend", help="recommend items to a user with a saved model")
    recommend.add_argument("--model", required=True, help="model file written by train --save")
    _add_data_options(recommend)
    recommend.add_argument("--user", required=True,
                           help="user id: a MovieLens user id, a Gowalla row number (from 0), "
                                "or a raw id of the CSV's user column")
    recommend.add_argument("-n", type=int, default=10, help="how many items (default 10)")
    recommend.add_argument("--include-seen", action="store_true",
                           help="do not filter the items the user has (MovieLens 100k: in the "
                                "train split; other data: anywhere in the data)")
    return parser


def _add_data_options(parser):
    parser.add_argument("--dataset", default=None, choices=[*_DATASETS, "gowalla"],
                        help="a MovieLens release, or gowalla: the NGCF/LightGCN split of "
                             "Gowalla check-ins (default: ml-100k unless --csv is given)")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="your own events: a CSV or TSV file with a header line")
    parser.add_argument("--user-col", default=None, help="--csv: column of the user ids")
    parser.add_argument("--item-col", default=None, help="--csv: column of the item ids")
    parser.add_argument("--rating-col", default=None, help="--csv: column of the ratings")
    parser.add_argument("--timestamp-col", default=None,
                        help="--csv: column of the timestamps (numbers), for leave-k-out and "
                             "time splits")
    parser.add_argument("--no-header", action="store_true",
                        help="--csv: the file has no header line; the --*-col options are "
                             "0-based column positions")
    parser.add_argument("--sep", default=None,
                        help="--csv: field separator (default: tab if the header has one, "
                             "else comma)")
    parser.add_argument("--split", default=None,
                        help="ml-100k: ua, ub or u1..u5 (default ua); gowalla has its own. "
                             "Other data: random-F "
                             "(a share F of each user's events held out at random, default "
                             "random-0.2), leave-K-out (each user's last K by time) or time-F "
                             "(the latest share F of all events)")
    parser.add_argument("--min-rating", type=float, default=None,
                        help="ratings >= this are positives (default: 4 for MovieLens; all "
                             "rows of a CSV)")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding the dataset's folder (or MovieLens zip) "
                             "(default: $BPR_NUMBA_DATA, then the download cache)")
    parser.add_argument("--no-download", action="store_true",
                        help="never download; fail when no local copy is found")


_DATASETS = {"ml-100k": "100k", "ml-1m": "1m", "ml-latest-small": "latest-small"}


# The library is imported inside the commands, not at the top: `bpr-numba --help`
# and usage errors then answer without loading numba.


def _model_from_args(args):
    from .estimator import BPR

    overrides = {}
    for option, param in (("factors", "factors"), ("loss", "loss"), ("optimizer", "optimizer"),
                          ("lr", "learning_rate"), ("reg", "regularization"),
                          ("negatives", "negatives"), ("batch_size", "batch_size")):
        value = getattr(args, option)
        if value is not None:
            overrides[param] = value
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    elif args.keras or args.preset in (None, "fast", "keras"):
        overrides["epochs"] = 10
    overrides["num_threads"] = args.threads
    overrides["random_state"] = args.seed
    if args.keras and args.preset not in (None, "keras"):
        raise ValueError(f"--keras is the keras preset; it cannot go with --preset {args.preset}.")
    preset = "keras" if args.keras else (args.preset or "fast")
    return BPR.preset(preset, **overrides)


def _metric_names(text, default):
    """The metric names of a --metrics value (``default`` when None), checked."""
    from ._scoring import metric_codes

    text = default if text is None else text
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    try:
        return metric_codes(names)[0]
    except ValueError as exc:
        raise ValueError(f"--metrics: {exc}") from None


def _train_metrics(args):
    """The metrics ``train`` reports and how often: ``(names, every)``; checked before any data."""
    gowalla = args.dataset == "gowalla"
    names = _metric_names(args.metrics, "recall@20,ndcg@20" if gowalla else "full_auc")
    every = args.eval_every if args.eval_every is not None else (0 if gowalla else 1)
    if every < 0:
        raise ValueError(f"--eval-every must be >= 0 (0: after the last epoch only); got {every}.")
    if args.plot and ("full_auc" not in names or every != 1):
        raise ValueError("--plot draws the full AUC of every epoch: use it with full_auc in "
                         "--metrics and --eval-every 1.")
    return names, every


def _shown(values, names):
    """``metric value`` pairs; full AUC alone is "AUC", the notebook's word for it."""
    return [("AUC" if names == ["full_auc"] else name, values[name]) for name in names]


def _train(args, start):
    from .metrics import evaluate

    names, every = _train_metrics(args)
    model = _model_from_args(args)
    data = _load_data(args)
    train, test = data.train, data.test
    print(f"{data.label}: {train.nnz:,} train and {test.nnz:,} test positives, matrix "
          f"{train.shape[0]} x {train.shape[1]}")
    described = repr(model)
    model.initialize(*train.shape)
    n_user_params, n_item_params = model.n_parameters
    mode = ("Keras-compatible mode" if args.keras or args.preset == "keras" else
            "quality preset" if args.preset == "quality" else "fast mode")
    print(f"Model ({mode}): {described}")
    print(f"  user factors: {n_user_params:>10,} parameters")
    print(f"  item factors: {n_item_params:>10,} parameters"
          + (" (incl. item bias)" if model.item_bias else ""))
    print(f"  total:        {n_user_params + n_item_params:>10,} parameters")
    print(f"Metrics on the test split ({', '.join(names)}; train items excluded"
          + (" except for full_auc" if "full_auc" in names else "") + "), "
          + ("after every epoch" if every == 1 else "after the last epoch" if every == 0
             else f"after every {every} epochs and the last"))

    timing = {"eval": 0.0, "train": 0.0}

    def scores(metrics=names):
        t = time.perf_counter()
        values = evaluate(model, test, train, metrics=metrics, num_threads=args.threads)
        timing["eval"] += time.perf_counter() - t
        return values

    auc_before = None
    if "full_auc" in names:  # the notebook's first line
        auc_before = scores(["full_auc"])["full_auc"]
        print(f"AUC before training: {auc_before:.4f}")
    results = {name: [] for name in names}
    evaluated = []
    n_epochs = model.get_params()["epochs"]

    def report(epoch, record):
        timing["train"] += record["seconds"]
        shown = ""
        if epoch == n_epochs or (every and epoch % every == 0):
            values = scores()
            record.update(values)  # into model.history_ (and a saved model)
            evaluated.append(epoch)
            for name in names:
                results[name].append(values[name])
            shown = "".join(f"{label} {value:.4f}  " for label, value in _shown(values, names))
        print(f"Epoch {epoch:>3}/{n_epochs}: {shown}loss {record['loss']:.4f}  "
              f"{record['seconds']:.2f} s")

    try:
        model.fit(data.train_input, callbacks=[report], show_progress=False)
    except KeyboardInterrupt:
        last = (", ".join(f"{label}: {value:.4f}" for label, value in
                          _shown({k: v[-1] for k, v in results.items()}, names))
                + f" after epoch {evaluated[-1]}") if evaluated else "no evaluation yet"
        print(f"Interrupted after {model.n_epochs_done_} of {n_epochs} epochs ({last}); "
              "nothing saved.")
        raise
    train_seconds, eval_seconds = timing["train"], timing["eval"]
    final = {name: values[-1] for name, values in results.items()}
    print(f"Final {', '.join(f'{label}: {value:.4f}' for label, value in _shown(final, names))} "
          f"after {n_epochs} epochs ({train_seconds:.2f} s training, {eval_seconds:.2f} s "
          f"evaluation)")
    if args.save:
        model.save(args.save)
        print(f"Saved the model to {args.save}")
    if args.plot:
        _plot(args.plot, results["full_auc"], [h["loss"] for h in model.history_], auc_before)
        print(f"Drew the learning curve in {args.plot}")
    if args.json:
        record = {"evaluated_epochs": evaluated, "metrics": results, "final": final}
        if "full_auc" in names:  # the notebook's figures, as before --metrics
            record.update(auc_before=auc_before, auc=results["full_auc"],
                          final_auc=final["full_auc"])
        record.update(train_seconds=train_seconds, eval_seconds=eval_seconds,
                      total_seconds=time.perf_counter() - start)
        print(json.dumps(record))
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
    ax.set_title("bpr-numba")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Data:
    """What a command needs of its data: CSR train/test, the input to fit, names."""

    def __init__(self, label, train, test, train_input, whole=None, titles=None, dataset=None):
        self.label = label
        self.dataset = dataset  # the --dataset name, None for a CSV
        self.train, self.test = train, test
        self.train_input = train_input  # Interactions (raw ids) or a matrix
        self.whole = whole  # every interaction, for filtering recommendations
        self.titles = titles  # item index -> title, or None


def _load_data(args, with_titles=False):
    from .data import Interactions
    from .datasets import load_gowalla, load_movielens, load_movielens_titles

    if args.csv is not None and args.dataset is not None:
        raise ValueError("give either --dataset or --csv, not both.")
    csv_only = [name for name in ("user_col", "item_col", "rating_col", "timestamp_col", "sep")
                if getattr(args, name) is not None]
    if args.no_header:
        csv_only.append("no_header")
    if args.csv is None and csv_only:
        raise ValueError(f"--{csv_only[0].replace('_', '-')} needs --csv FILE.")
    dataset = args.dataset or ("ml-100k" if args.csv is None else None)
    if dataset == "gowalla":
        if args.split is not None:
            raise ValueError("--split does not apply to gowalla: its split is the papers' own "
                             "train.txt and test.txt.")
        if args.min_rating is not None:
            raise ValueError("--min-rating does not apply to gowalla: its check-ins have no "
                             "ratings, each one is a positive.")
        train, test = load_gowalla(data_home=args.data_dir, download=not args.no_download)
        label = "Gowalla, the NGCF/LightGCN split (train.txt, test.txt)"
        # recommend filters what a user has in either file.
        whole = (train + test).tocsr() if with_titles else train
        return _Data(label, train, test, train, whole=whole, dataset=dataset)
    if dataset == "ml-100k":
        split = args.split or "ua"
        min_rating = 4 if args.min_rating is None else args.min_rating
        if float(min_rating) != int(min_rating):
            raise ValueError(f"--min-rating must be a whole number for ml-100k; got {min_rating}.")
        train, test = load_movielens("100k", split=split, min_rating=int(min_rating),
                                     data_home=args.data_dir, download=not args.no_download)
        train, test = train.tocsr(), test.tocsr()
        titles = None
        if with_titles:
            titles = load_movielens_titles(data_home=args.data_dir,
                                           download=not args.no_download)
        label = f"MovieLens 100k, split {split}, ratings >= {min_rating:g} as positives"
        return _Data(label, train, test, train, whole=train, titles=titles, dataset=dataset)
    if dataset is not None:
        variant = _DATASETS[dataset]
        min_rating = 4 if args.min_rating is None else args.min_rating
        interactions = load_movielens(variant, min_rating=min_rating, data_home=args.data_dir,
                                      download=not args.no_download)
        label = f"MovieLens {variant}, ratings >= {min_rating:g} as positives"
        titles = None
        if with_titles:
            by_id = load_movielens_titles(variant, data_home=args.data_dir,
                                          download=not args.no_download)
            titles = [by_id.get(int(raw), str(raw)) for raw in interactions.item_ids]
    else:
        if args.user_col is None or args.item_col is None:
            raise ValueError("--csv needs --user-col and --item-col (the columns of the ids).")
        if args.min_rating is not None and args.rating_col is None:
            raise ValueError("--min-rating needs --rating-col (the column of the ratings).")
        columns = [args.user_col, args.item_col, args.rating_col, args.timestamp_col]
        if args.no_header:
            columns = [_position(col) for col in columns]
        interactions = Interactions.from_csv(
            args.csv, *columns[:2], rating_col=columns[2], timestamp_col=columns[3],
            sep=args.sep, header=not args.no_header, min_rating=args.min_rating)
        label = f"{args.csv}" + ("" if args.min_rating is None
                                 else f", ratings >= {args.min_rating:g} as positives")
        titles = None
    if with_titles:  # recommend: the whole data, no split
        return _Data(label, interactions.matrix, None, interactions, whole=interactions.matrix,
                     titles=titles, dataset=dataset)
    split = args.split or "random-0.2"
    # The split's seed defaults to 0 (not the model's None) so that evaluate,
    # given the same options, rebuilds the very same split.
    train, test = _split(interactions, split, 0 if args.seed is None else args.seed)
    label += (f", split {split}: {interactions.n_users:,} users, "
              f"{interactions.n_items:,} items")
    return _Data(label, train.matrix, test.matrix, train, whole=interactions.matrix,
                 titles=titles, dataset=dataset)


def _position(column):
    """A --*-col value as a 0-based position (for --no-header)."""
    if column is None:
        return None
    try:
        position = int(column)
    except ValueError:
        position = -1
    if position < 0:
        raise ValueError(f"with --no-header, columns are 0-based positions; got {column!r}.")
    return position


def _split(interactions, split, seed):
    """Apply ``random-F``, ``leave-K-out`` or ``time-F`` to ``interactions``."""
    import re

    from . import split as splits

    match = re.fullmatch(r"(random|time)-([0-9]*\.?[0-9]+)|leave-([0-9]+)-out", split)
    if match is None:
        raise ValueError(
            f"--split must be random-F, leave-K-out or time-F (e.g. random-0.2, leave-10-out, "
            f"time-0.1) for this data; got {split!r} (ua, ub, u1..u5 are ml-100k's)."
        )
    if match.group(1) != "random" and interactions.timestamps is None:
        raise ValueError(f"--split {split} orders events by time: it needs --timestamp-col "
                         "(MovieLens has timestamps; a CSV needs the column).")
    if match.group(3) is not None:
        return splits.leave_k_out(interactions, k=int(match.group(3)), random_state=seed)
    fraction = float(match.group(2))
    if match.group(1) == "random":
        return splits.random_split(interactions, test_fraction=fraction, random_state=seed)
    return splits.time_split(interactions, test_fraction=fraction)


def _evaluate(args):
    from .estimator import BPR
    from .metrics import evaluate

    names = _metric_names(args.metrics, "recall@20,ndcg@20" if args.dataset == "gowalla" else
                          "full_auc,auc,precision@10,recall@10,ndcg@10")
    model = BPR.load(args.model)
    data = _load_data(args)
    _check_same_ids(model, data.train_input)
    train, test = data.train, data.test
    results = evaluate(model, test, train, metrics=names, num_threads=args.threads)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.model} on {data.label} ({test.nnz:,} test positives; train items "
              f"excluded{' except for full_auc' if 'full_auc' in names else ''}):")
        for name, value in results.items():
            print(f"  {name:<14} {value:.4f}")
    return 0


def _recommend(args):
    from .estimator import BPR

    model = BPR.load(args.model)
    data = _load_data(args, with_titles=True)
    _check_same_ids(model, data.train_input)
    if model.user_map_ is None:  # MovieLens 100k and Gowalla: ids are the row numbers
        # MovieLens ids start at 1: row 0 and column 0 are not a user and a movie.
        first = 0 if data.dataset == "gowalla" else 1
        try:
            user = int(args.user)
        except ValueError:
            user = -1
        if not first <= user < model.n_users:
            raise ValueError(f"--user must be a {'Gowalla' if first == 0 else 'MovieLens'} user "
                             f"id in {first}..{model.n_users - 1}; got {args.user}.")
        ids, scores = model.recommend(user, data.whole, N=args.n,
                                      filter_already_liked_items=not args.include_seen,
                                      filter_items=[0] if first else None)
        row, shown = user, ids
        where = "in the train split" if first else "in train.txt or test.txt"
    else:
        try:
            row = model.user_map_.to_index(args.user, "--user")
        except KeyError:
            raise ValueError(f"--user {args.user!r} is not a user id of this data (e.g. "
                             f"{', '.join(map(str, model.user_map_.ids[:3]))}).") from None
        ids, scores = model.recommend(row, data.whole, N=args.n,
                                      filter_already_liked_items=not args.include_seen)
        shown = model.item_map_.to_raw(ids)
        where = "in the data"
    seen = data.whole[row].nnz
    noun = "movies" if data.titles is not None else "items"
    print(f"Top {len(ids)} {noun} for user {args.user} ({seen} liked {noun} {where}"
          f"{' shown too' if args.include_seen else ' excluded'}):")
    for rank, (index, raw, score) in enumerate(zip(ids, shown, scores), start=1):
        name = f"{data.titles[index]}  (id {raw}" if data.titles is not None else f"{raw}  ("
        print(f"{rank:>3}. {name}{', ' if data.titles is not None else ''}score {score:.3f})")
    return 0


def _check_same_ids(model, train_input):
    """Refuse a model whose raw ids are not those of the data given on the command line."""
    from ._validation import id_maps

    shape = getattr(train_input, "shape", None)  # a matrix: ids are its rows and columns
    if id_maps(model) != id_maps(train_input) or (
            shape is not None and tuple(shape) != (model.n_users, model.n_items)):
        sizes = ("" if shape is None or tuple(shape) == (model.n_users, model.n_items) else
                 f" (model {model.n_users} x {model.n_items}, data {shape[0]} x {shape[1]})")
        raise ValueError(
            f"the model was trained on other data: its users and items are not those of the "
            f"data given here{sizes}; pass the same --dataset/--csv options as to train."
        )


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

"""Cross-validation grouped by photo: every recipe decision of the classifier made on enough faces.

    python bench/crossval.py compact-96 scratch --work /tmp/facemask-cv            # screening: validation parts
    python bench/crossval.py compact-96 scratch --work /tmp/facemask-cv --final    # the final report: test parts

The README's test split holds 28 unmasked faces: one of them is 3.6 points of no-mask recall, too few to
choose anything on. Here the 325 photos of `../shared/datasets/kaggle-format` (1,422 faces) are used k
times over, with facemask's own code at every step:

1. Every face is cut once by split.py (`facemask.split`, masks under the nose counted as no-mask, as in
   the README), all into one folder, with its manifest (photo, face size).
2. k folds of photos (scikit-learn's StratifiedKFold over the photos, stratified by whether a photo has
   an unmasked face, seeded): fold i's test part is the i-th part's photos. Its other photos are divided
   into train and valid by split.py's own `assign_splits` (7/8 and 1/8 of their faces, per class): valid
   serves early stopping and the choice of the decision threshold, as the README's valid split does. No
   photo is in two parts of a fold. Each fold is a data folder of symbolic links to the crops, with its
   manifest, so `facemask.training.train` and `facemask.evaluate` run on it unchanged.
3. Each candidate (a TrainConfig: network, input size, augmentations, extra data; see CANDIDATES) is
   trained on every fold and scored on the fold's valid part, at 0.5 and at the threshold chosen there
   (optimistic, since chosen on the same faces), and with the mirrored face averaged in ("+ flip").
   Every recipe decision is made on these validation figures.
4. `--final` also scores the fold test parts, for the final report only: they are looked at once the
   recipe is chosen, never to choose it. The output says which parts each table is on.

Mean and standard deviation over the folds are printed per candidate (accuracy, mask recall, no-mask
recall, accuracy on faces of 16 px and more, accuracy per face size, ROC AUC, log loss, epochs, minutes)
and written to `<work>/summary.json`. Finished folds are kept (`<work>/runs/<candidate>/fold<i>/`), so
an interrupted run resumes where it stopped, and `--final` reuses the trained models.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from reproduce import KAGGLE, cpu  # noqa: E402

from facemask import CLASS_NAMES, SPLITS, save_atomically, split, splitting  # noqa: E402
from facemask.metrics import SIZE_BUCKETS, by_size, choose_threshold, compute_metrics, serving_threshold  # noqa: E402

EXTRA = ROOT.parent / "shared" / "datasets" / "crops"
ORIGINAL_AUGMENT = "flip,rotation,shift"
COMPACT = {"arch": "compact", "image_size": 96, "augment": ORIGINAL_AUGMENT}
# The candidates, by name: TrainConfig fields over the defaults (data, out, reports and seed are the fold's).
# Screening varies one thing at a time from compact-96 (the original project's augmentations); the later entries
# combine what the validation parts kept (see bench/README.md).
CANDIDATES: dict[str, dict] = {
    "scratch": {"arch": "scratch", "image_size": 224, "augment": ORIGINAL_AUGMENT},
    "compact-64": COMPACT | {"image_size": 64},
    "compact-80": COMPACT | {"image_size": 80},
    "compact-96": COMPACT,
    "compact-112": COMPACT | {"image_size": 112},
    "compact-96+hue": COMPACT | {"augment": ORIGINAL_AUGMENT + ",hue"},
    "compact-96+colour": COMPACT | {"augment": ORIGINAL_AUGMENT + ",hue,saturation,brightness,contrast,grayscale"},
    "compact-96+downscale": COMPACT | {"augment": ORIGINAL_AUGMENT + ",downscale"},
    "compact-96+blur": COMPACT | {"augment": ORIGINAL_AUGMENT + ",blur"},
    "compact-96+jpeg": COMPACT | {"augment": ORIGINAL_AUGMENT + ",jpeg"},
    "compact-96+extra": COMPACT | {"extra_train": (EXTRA,)},
    "compact-96+extra-0.3": COMPACT | {"extra_train": (EXTRA,), "extra_weight": 0.3},
    "compact-96+extra-0.1": COMPACT | {"extra_train": (EXTRA,), "extra_weight": 0.1},
    "compact-96-no-rotation": COMPACT | {"augment": "flip,shift"},
    "compact-96-lr3e-3": COMPACT | {"learning_rate": 0.003},
    "compact-96+extra-0.3+downscale": COMPACT | {"extra_train": (EXTRA,), "extra_weight": 0.3,
                                                 "augment": ORIGINAL_AUGMENT + ",downscale"},
}
PARTS = ("valid", "test")
FIGURES = ("accuracy", "mask_recall", "no_mask_recall", "accuracy_16_up", "roc_auc", "log_loss")


def cut_all(images: Path, csv_path: Path, out: Path) -> list[dict[str, str]]:
    """Every face of the photos cut once by split.py into `out` (all in its train split); the manifest rows."""
    if not (out / "manifest.csv").is_file():
        code = split.main([str(images), str(csv_path), "100", "0", "0", "--incorrect", "no-mask", "--out", str(out),
                           "--force"])
        if code != 0:
            raise SystemExit(f"error: split.py failed on {images} (exit {code})")
    return splitting.read_manifest(out / "manifest.csv", splitting.MANIFEST_COLUMNS)


def make_folds(rows: list[dict[str, str]], folds: int, seed: int) -> list[dict[str, str]]:
    """Per fold, photo -> "train", "valid" or "test": grouped by photo, test parts stratified by whether a
    photo has an unmasked face, valid carved from the training photos by split.py's assign_splits."""
    from sklearn.model_selection import StratifiedKFold

    per_photo: dict[str, Counter] = {}
    for row in rows:
        per_photo.setdefault(row["source"], Counter())[row["label"]] += 1
    photos = sorted(per_photo)
    unmasked = [int(per_photo[photo]["no-mask"] > 0) for photo in photos]
    parts = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (rest, test) in enumerate(splitter.split(photos, unmasked)):
        training = {photos[i]: per_photo[photos[i]] for i in rest}
        assignment = splitting.assign_splits(training, np.array([7 / 8, 1 / 8, 0.0]), seed + fold)
        assignment |= {photos[i]: "test" for i in test}
        parts.append(assignment)
    return parts


def write_fold(crops: Path, rows: list[dict[str, str]], assignment: dict[str, str], folder: Path) -> Path:
    """A data folder of symbolic links to the crops, in the fold's parts, with its own manifest (face sizes)."""
    if (folder / "manifest.csv").is_file():
        return folder
    for part in SPLITS:
        for label in CLASS_NAMES:
            (folder / part / label).mkdir(parents=True, exist_ok=True)
    fold_rows = []
    for row in rows:
        part = assignment[row["source"]]
        path = f"{part}/{row['label']}/{Path(row['path']).name}"
        link = folder / path
        if not link.is_symlink():
            link.symlink_to((crops / row["path"]).resolve())
        fold_rows.append(row | {"split": part, "path": path})

    def write(target: Path) -> None:
        with open(target, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=splitting.MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(fold_rows)

    save_atomically(folder / "manifest.csv", write)  # last: its presence means the fold is complete
    return folder


def predictions(model, part_dir: Path) -> dict[str, np.ndarray]:
    """Labels, face sizes, photos and P(no-mask) of every crop of a fold's part, plain and with the mirrored
    face averaged in."""
    from facemask.classifier import predict_proba
    from facemask.evaluation import crop_face_sizes, find_manifest, predict_directory
    from facemask.images import load_image, to_model_input

    files, labels, probabilities = predict_directory(model, part_dir)
    sizes, note = crop_face_sizes(files, find_manifest(part_dir))
    if sizes is None:
        raise SystemExit(f"error: {note}")
    with open(find_manifest(part_dir), newline="") as f:
        photo_of = {(part_dir.parent / row["path"]).resolve(): row["source"] for row in csv.DictReader(f)}
    size = tuple(model.input_shape[1:3])
    mirrored = to_model_input([load_image(f) for f in files], size)[:, :, ::-1]
    flipped = predict_proba(model, mirrored)
    return {"labels": labels, "sizes": sizes, "photos": np.array([photo_of[Path(f).resolve()] for f in files]),
            "p": probabilities[:, 1], "p_flip": flipped[:, 1]}


def scores(labels: np.ndarray, p: np.ndarray, sizes: np.ndarray, threshold: float) -> dict:
    """The figures of one part at one threshold."""
    rows = np.stack([1 - p, p], axis=1)
    metrics = compute_metrics(labels, rows, threshold=threshold)
    large = sizes >= 16
    correct = (p >= threshold).astype(int) == labels
    clipped = np.clip(np.where(labels == 1, p, 1 - p), 1e-7, 1)
    return {
        "threshold": threshold,
        "count": int(len(labels)),
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "mask_recall": metrics["per_class"]["mask"]["recall"],
        "no_mask_recall": metrics["no_mask_recall"],
        "accuracy_16_up": float(correct[large].mean()) if large.any() else None,
        "roc_auc": metrics["roc_auc"],
        "log_loss": float(-np.log(clipped).mean()),
        "by_size": {name: entry["accuracy"] for name, entry in by_size(labels, rows, sizes, threshold).items()},
    }


def part_report(found: dict[str, np.ndarray], threshold: float, flip_threshold: float) -> dict:
    """One part's figures at 0.5, at the model's threshold, and with the mirror averaged in (its own threshold)."""
    averaged = (found["p"] + found["p_flip"]) / 2
    return {"at_0.5": scores(found["labels"], found["p"], found["sizes"], 0.5),
            "at_threshold": scores(found["labels"], found["p"], found["sizes"], threshold),
            "flip_at_threshold": scores(found["labels"], averaged, found["sizes"], flip_threshold)}


def run_fold(name: str, overrides: dict, fold_dir: Path, out: Path, seed: int, final: bool) -> dict:
    """Train the candidate on one fold (unless done), score its valid part (and test part if `final`)."""
    import keras

    from facemask.config import TrainConfig
    from facemask.models import load_model
    from facemask.training import train

    result_path = out / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    # The candidate may name its own training seed (an ensemble's members); the folds stay the same.
    config = TrainConfig(**{"seed": seed, **overrides, "data": fold_dir, "out": out, "reports": out / "reports"})
    model_path = out / f"{config.arch}.keras"
    if result is None:
        keras.backend.clear_session()
        started = time.perf_counter()
        _, history = train(config, verbose=0)
        minutes = (time.perf_counter() - started) / 60
        result = {"candidate": name, "config": config.resolved().to_json(), "minutes": minutes,
                  "epochs": len(history["loss"]), "best_epoch": int(np.argmin(history["val_loss"])) + 1}
    if "valid" not in result or (final and "test" not in result):
        keras.backend.clear_session()
        model, _ = load_model(model_path)
        valid = predictions(model, fold_dir / "valid")
        np.savez(out / "valid_predictions.npz", **valid)
        # The rule training now applies, from the valid part's predictions (a run trained before the rule
        # changed holds an older threshold in its sidecar).
        threshold = serving_threshold(valid["labels"], valid["p"])
        flip_threshold = serving_threshold(valid["labels"], (valid["p"] + valid["p_flip"]) / 2)
        result["no_mask_threshold"], result["flip_threshold"] = threshold, flip_threshold
        result["valid"] = part_report(valid, threshold, flip_threshold)
        if final:
            test = predictions(model, fold_dir / "test")
            np.savez(out / "test_predictions.npz", **test)
            result["test"] = part_report(test, threshold, flip_threshold)
        payload = json.dumps(result, indent=2) + "\n"
        save_atomically(result_path, lambda target: target.write_text(payload))
    return result


# Rules for the decision threshold, compared by cross-fitting on the valid parts (--threshold-rules).
THRESHOLD_RULES = {
    "0.5": lambda labels, p: 0.5,
    "best balanced accuracy": choose_threshold,
    "halfway from 0.5 to the best balanced accuracy's (the training default)": serving_threshold,
}


def valid_predictions(out: Path, fold_dir: Path) -> dict[str, np.ndarray]:
    """The valid part's predictions of a finished run, from its file, or from its model (older runs)."""
    saved = out / "valid_predictions.npz"
    if not saved.is_file():
        import keras

        from facemask.models import load_model

        keras.backend.clear_session()
        model, _ = load_model(next(out.glob("*.keras")))
        np.savez(saved, **predictions(model, fold_dir / "valid"))
    with np.load(saved) as found:
        return dict(found)


def cross_fitted(found: dict[str, np.ndarray], seed: int) -> dict[str, dict]:
    """Each threshold rule fitted on half the valid photos and scored on the other half, and the other way
    round; the figures of the two scored halves pooled. Honest for the rules, since no face decides its own."""
    photos = np.unique(found["photos"])
    first = set(np.random.default_rng(seed).permutation(photos)[: len(photos) // 2])
    half = np.array([photo in first for photo in found["photos"]])
    report = {}
    for name, rule in THRESHOLD_RULES.items():
        labels, predicted = [], []
        for fit, score in ((half, ~half), (~half, half)):
            threshold = rule(found["labels"][fit], found["p"][fit])
            labels.append(found["labels"][score])
            predicted.append((found["p"][score] >= threshold).astype(int))
        labels, predicted = np.concatenate(labels), np.concatenate(predicted)
        recalls = [float((predicted[labels == k] == k).mean()) for k in (0, 1)]
        report[name] = {"accuracy": float((predicted == labels).mean()), "mask_recall": recalls[0],
                        "no_mask_recall": recalls[1], "balanced_accuracy": sum(recalls) / 2}
    return report


def format_rules(per_candidate: dict[str, list[dict]]) -> str:
    figures = ("accuracy", "mask_recall", "no_mask_recall", "balanced_accuracy")
    lines = ["| candidate | threshold rule | " + " | ".join(figures) + " |", "|" + " --- |" * (2 + len(figures))]
    for name, folds in per_candidate.items():
        for rule in THRESHOLD_RULES:
            cells = [mean_std([fold[rule][figure] for fold in folds]) for figure in figures]
            lines.append(f"| {name} | {rule} | " + " | ".join(f"{m:.3f}±{s:.3f}" for m, s in cells) + " |")
    return "\n".join(lines)


def ensemble_fold(outs: list[Path], fold_dir: Path) -> dict:
    """One fold's valid part scored on the average of several finished runs' predictions."""
    found = [valid_predictions(out, fold_dir) for out in outs]
    if any(not np.array_equal(other["labels"], found[0]["labels"]) for other in found[1:]):
        raise SystemExit(f"error: the runs {outs} did not score the same crops")
    p = np.mean([member["p"] for member in found], axis=0)
    runs = [json.loads((out / "result.json").read_text()) for out in outs]
    threshold = serving_threshold(found[0]["labels"], p)
    return {"config": {"data": str(fold_dir)}, "epochs": sum(run["epochs"] for run in runs),
            "minutes": sum(run["minutes"] for run in runs),
            "valid": {"at_0.5": scores(found[0]["labels"], p, found[0]["sizes"], 0.5),
                      "at_threshold": scores(found[0]["labels"], p, found[0]["sizes"], threshold)}}


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return statistics.mean(known), statistics.stdev(known) if len(known) > 1 else 0.0


def summarise(results: dict[str, list[dict]], part: str, variant: str) -> dict[str, dict]:
    """Per candidate: mean and std over its folds of every figure of one part and variant."""
    summary = {}
    for name, folds in results.items():
        reports = [fold[part][variant] for fold in folds if part in fold]
        if not reports:
            continue
        entry = {figure: mean_std([r[figure] for r in reports]) for figure in FIGURES}
        entry |= {f"accuracy {bucket}": mean_std([r["by_size"][bucket] for r in reports])
                  for bucket, _, _ in SIZE_BUCKETS}
        entry["faces"] = sum(r["count"] for r in reports)
        entry["folds"] = len(reports)
        entry["epochs"] = mean_std([fold["epochs"] for fold in folds])
        entry["minutes"] = mean_std([fold["minutes"] for fold in folds])
        entry["threshold"] = mean_std([r["threshold"] for r in reports])
        summary[name] = entry
    return summary


def paired(results: dict[str, list[dict]], reference: str, part: str, variant: str) -> dict[str, dict]:
    """Per candidate, its difference from `reference` fold by fold (same folds, so the folds' own spread
    cancels): mean and std of the differences in accuracy, balanced accuracy, ROC AUC and log loss."""
    base = {fold["config"]["data"]: fold[part][variant] for fold in results.get(reference, []) if part in fold}
    differences = {}
    for name, folds in results.items():
        pairs = [(fold[part][variant], base[fold["config"]["data"]]) for fold in folds
                 if part in fold and fold["config"]["data"] in base]
        if name == reference or not pairs:
            continue
        differences[name] = {figure: mean_std([ours[figure] - theirs[figure] for ours, theirs in pairs
                                               if ours[figure] is not None and theirs[figure] is not None])
                             for figure in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss")}
        differences[name]["folds"] = len(pairs)
    return differences


def format_paired(differences: dict[str, dict], title: str) -> str:
    lines = [title, "| candidate | folds | Δ accuracy | Δ balanced accuracy | Δ ROC AUC | Δ log loss |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, entry in differences.items():
        cells = [f"{entry[figure][0]:+.3f}±{entry[figure][1]:.3f}" if entry[figure][0] is not None else "n/a"
                 for figure in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss")]
        lines.append(f"| {name} | {entry['folds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(summary: dict[str, dict], title: str) -> str:
    def cell(pair: tuple[float | None, float | None], digits: int = 3) -> str:
        mean, std = pair
        return "n/a" if mean is None else f"{mean:.{digits}f}±{std:.{digits}f}"

    columns = ["accuracy", "mask_recall", "no_mask_recall", "accuracy_16_up",
               *[f"accuracy {bucket}" for bucket, _, _ in SIZE_BUCKETS], "roc_auc", "log_loss", "threshold"]
    head = ["candidate", "folds", "faces", *columns, "epochs", "minutes"]
    lines = [title, "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, entry in summary.items():
        cells = [name, str(entry["folds"]), str(entry["faces"]), *[cell(entry[c]) for c in columns],
                 cell(entry["epochs"], 0), cell(entry["minutes"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("candidates", nargs="+", help=f"candidate names: {', '.join(CANDIDATES)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/facemask-cv"), help="folder for every output")
    parser.add_argument("--images", type=Path, default=KAGGLE / "images", help="the photos")
    parser.add_argument("--csv", type=Path, default=KAGGLE / "train.csv", help="their boxes (Kaggle layout)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and of every training run")
    parser.add_argument("--final", action="store_true",
                        help="also score the fold test parts: the final report, once the recipe is chosen")
    parser.add_argument("--reference", default=None, metavar="NAME",
                        help="also print each candidate's fold-by-fold difference from this one (paired)")
    parser.add_argument("--threshold-rules", action="store_true",
                        help="train nothing: compare rules for the decision threshold on the finished folds' valid "
                             "parts, each rule fitted on half the photos and scored on the other half")
    parser.add_argument("--ensemble", action="store_true",
                        help="train nothing: score the average of the candidates' predictions on the finished "
                             "folds' valid parts (an ensemble of the candidates)")
    parser.add_argument("--summary-only", action="store_true",
                        help="train nothing: summarise the folds already done (while another run trains)")
    parser.add_argument("--with", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field for every candidate (e.g. epochs=2), repeatable")
    args = parser.parse_args(argv)
    unknown = [name for name in args.candidates if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    settings = dict(setting.split("=", 1) for setting in args.settings)
    work = args.work.resolve()
    rows = cut_all(args.images, args.csv, work / "crops")
    assignments = make_folds(rows, args.folds, args.seed)
    folds = [write_fold(work / "crops", rows, assignment, work / f"folds-{args.folds}" / f"fold{i}")
             for i, assignment in enumerate(assignments)]
    if args.threshold_rules:
        rules = {name: [cross_fitted(valid_predictions(out, fold_dir), args.seed + i)
                        for i, fold_dir in enumerate(folds)
                        if ((out := work / "runs" / name / f"fold{i}") / "result.json").is_file()]
                 for name in args.candidates}
        print("VALIDATION parts, cross-fitted by halves of photos (mean±std over the folds):")
        print(format_rules({name: folds for name, folds in rules.items() if folds}))
        return 0
    if args.ensemble:
        name = "+".join(args.candidates)
        members = [[work / "runs" / member / f"fold{i}" for member in args.candidates] for i in range(len(folds))]
        results = {name: [ensemble_fold(outs, fold_dir) for outs, fold_dir in zip(members, folds, strict=True)
                          if all((out / "result.json").is_file() for out in outs)]}
        for variant, words in (("at_0.5", "at threshold 0.5"), ("at_threshold", "at the threshold chosen on valid")):
            print("\n" + format_table(summarise(results, "valid", variant),
                                      f"VALIDATION parts, the candidates' P(no-mask) averaged, {words}:"))
        return 0
    results: dict[str, list[dict]] = {}
    for name in args.candidates:
        for i, fold_dir in enumerate(folds):
            out = work / "runs" / name / f"fold{i}"
            if args.summary_only:
                done = out / "result.json"
                if done.is_file() and (not args.final or "test" in json.loads(done.read_text())):
                    results.setdefault(name, []).append(json.loads(done.read_text()))
                continue
            print(f"{name}: fold {i + 1} of {len(folds)}", flush=True)
            result = run_fold(name, CANDIDATES[name] | settings, fold_dir, out, args.seed, args.final)
            results.setdefault(name, []).append(result)
    report = {"cpu": cpu(), "folds": args.folds, "seed": args.seed, "photos": len({r["source"] for r in rows}),
              "faces": len(rows), "candidates": {name: CANDIDATES[name] | settings for name in args.candidates}}
    print(f"\n{report['faces']} faces of {report['photos']} photos in {args.images}, {args.folds} folds grouped by "
          f"photo (seed {args.seed}), on {report['cpu']}; mean±std over the folds")
    for part in PARTS if args.final else PARTS[:1]:
        label = ("VALIDATION parts (every choice is made on these)" if part == "valid"
                 else "TEST parts (the final report: never used to choose)")
        for variant, words in (("at_0.5", "at threshold 0.5"), ("at_threshold", "at the threshold chosen on valid"),
                               ("flip_at_threshold", "mirrored face averaged in, its threshold chosen on valid")):
            summary = summarise(results, part, variant)
            report.setdefault(part, {})[variant] = summary
            print("\n" + format_table(summary, f"{label}, {words}:"))
            if args.reference and variant == "at_0.5":
                differences = paired(results, args.reference, part, variant)
                report[part]["paired_at_0.5"] = differences
                print("\n" + format_paired(differences, f"{label}, at 0.5, difference from {args.reference} "
                                                         "on the same folds (mean±std over the folds):"))
    if args.summary_only:
        return 0
    path = work / ("summary-final.json" if args.final else "summary.json")
    payload = json.dumps(report, indent=2, default=str) + "\n"
    save_atomically(path, lambda target: target.write_text(payload))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

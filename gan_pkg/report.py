"""An evaluation's result as a table: for the terminal and as Markdown.

gan_pkg.evaluate measures; this module only words and lays out what it measured:
one row per figure, generated beside the real floor, under lines that say which
feature space the figures were read in, and whether it passed its check.
"""

from __future__ import annotations

ROWS = [
    ("fid", "FID (lower is better)", "{:.3f}"),
    ("kid", "KID (lower is better)", None),
    ("classifier_score", "classifier score (max {classes})", "{:.3f}"),
    ("precision", "precision (k=3)", "{:.3f}"),
    ("recall", "recall (k=3)", "{:.3f}"),
    ("modes_covered", "classes over 5% of samples", "{}"),
    ("class_histogram", "class shares 0..{last}", None),
    ("label_accuracy", "label accuracy (mean over classes)", "{:.3f}"),
    ("label_accuracy_min", "label accuracy, worst class", "{:.3f}"),
    ("label_accuracy_by_class", "label accuracy by class", None),
    ("intra_fid", "intra-class FID (mean)", "{:.3f}"),
    ("swd", "SWD x1e3, mean of levels (lower is better)", "{:.2f}"),
    ("swd_levels", "SWD x1e3 at {resolutions} px", None),
    ("chroma_ratio", "chroma / held-out's (target 1.0)", "{:.3f}"),
    ("colour_distance", "colour histogram distance (lower is better)", "{:.3f}"),
    ("nn_l1_min", "nearest-train L1, min", "{:.4f}"),
    ("nn_l1_mean", "nearest-train L1, mean", "{:.4f}"),
    ("nn_l1_below_real", "share closer than real (5% quantile)", "{:.3f}"),
    ("mean", "mean (target 4)", "{:.4f}"),
    ("std", "std (target 1.25)", "{:.4f}"),
    ("ks", "KS statistic vs N(4, 1.25)", "{:.4f}"),
    ("ks_pvalue", "KS p-value", "{:.3g}"),
]


def _cell(figures: dict, key: str, fmt: str | None) -> str:
    if key == "kid":
        return f"{figures['kid']:.5f} ± {figures['kid_se']:.5f}"
    if key in ("class_histogram", "label_accuracy_by_class"):
        return " ".join(f"{round(100 * s):d}" for s in figures[key]) + " %"
    if key == "swd_levels":
        return " / ".join(f"{value:.1f}" for value in figures[key])
    return fmt.format(figures[key])


def table_rows(result: dict) -> list[tuple[str, str, str]]:
    gen, floor = result["generated"], result["real_floor"]
    classes = len(gen.get("class_histogram", ()))  # the feature classifier's classes, where they are the data's
    resolutions = "/".join(str(side) for side in result.get("swd_resolutions", ()))
    return [
        (label.format(classes=classes, last=classes - 1, resolutions=resolutions),
         _cell(gen, key, fmt), _cell(floor, key, fmt))
        for key, label, fmt in ROWS
        if key in gen
    ]


def features_line(result: dict) -> str | None:
    """What the figures were measured in, or why most are missing; None for 1-D results."""
    if result.get("feature_space"):
        return f"features: {result['feature_space']}"
    return result.get("features_missing")


def check_line(result: dict) -> str | None:
    """What the feature space's check found (gan_pkg.features.check_space); None where none ran."""
    check = result.get("feature_check")
    if not check:
        return None
    accuracy = check.get("heldout_accuracy")
    seen = f"{check['images']} images each"
    if accuracy is not None:
        seen += f"; the classifier's held-out accuracy {accuracy:.3f}"
    if check["too_weak"]:
        failed = ", ".join(f"{name} scored FID {check['degraded_fid'][name]:.4g}" for name in check["failed"])
        return (
            f"WARNING: this feature space is too weak to judge samples: {failed}, no worse than real images' "
            f"{check['real_fid']:.4g} ({seen}); read SWD and the colour figures, not FID, KID, precision or recall"
        )
    degraded = ", ".join(f"{name} {value:.4g}" for name, value in check["degraded_fid"].items())
    return f"feature space check: FID of real images {check['real_fid']:.4g}; {degraded}: each worse ({seen})"


def _header(result: dict) -> list[str]:
    return [line for line in (features_line(result), check_line(result)) if line]


def format_table(result: dict) -> str:
    rows = [("metric", "generated", "real floor"), *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*_header(result), *lines])


def format_markdown(result: dict, source: str) -> str:
    lines = [
        f"# Evaluation of {source}",
        "",
        f"{result['num_samples']} samples (seed {result['seed']}) vs {result['reference']}.",
    ]
    if result.get("feature_space"):
        lines.append(
            f"Features: {result['feature_space']}. KID: mean ± standard error over "
            f"{result['kid_subsets']} subsets of {result['kid_subset_size']}."
        )
    elif result.get("features_missing"):
        lines.append(f"No FID, KID, precision or recall: {result['features_missing']}.")
    if result.get("feature_check"):
        lines.append(check_line(result) + ".")
    if "swd_resolutions" in result:
        lines.append(
            "SWD: PGGAN's sliced Wasserstein distance between 7x7 patches of the images' Laplacian pyramids, x1e3, "
            "normalised by the held-out set's statistics."
            + (" Chroma: mean CIELAB chroma over the held-out set's; colour histogram distance: the share of pixels "
               "in other cells of an 8x8x8 RGB histogram." if "chroma_ratio" in result["generated"] else "")
        )
    if "memorization_threshold" in result:
        lines.append(
            "Nearest-train L1 (tutorial 001's l1_compare_images): its floor is the held-out images' distance to the "
            f"training set; 'closer than real' counts samples under {result['memorization_threshold']:.4f}, "
            "the 5% quantile of that."
        )
    lines += ["", "| metric | generated | real floor |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(result)]
    return "\n".join(lines) + "\n"

"""An experiment's outputs: results.json (every run, and the mean and spread over seeds), results.md (tables) and
figure.png in the style of Imagen's scaling plots (Saharia et al. 2022, Fig. 4: FID against CLIP score, one curve
per model over guidance scales), with an accuracy panel beside it.

Spread over seeds is shown as mean ± half the range (min to max); with one seed there is no spread to show.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

ACCURACIES = (  # (key in the summary, column title, bar label): the headline accuracies, at the headline guidance
    ("compositional_exact", "compositional exact", "compositional\nexact"),
    ("colour_trained", "colour, trained words", "colour\ntrained words"),
    ("colour_synonyms", "colour, held-out synonyms", "colour\nsynonyms"),
    ("shape_trained", "shape, trained words", "shape\ntrained words"),
    ("shape_synonyms", "shape, held-out synonyms", "shape\nsynonyms"),
)
RECOGNITION = (  # the same for a corpus with held-out words (recognition.py): the prompted concept recognised
    ("words_top1", "held-out words top-1", "words\ntop-1"),
    ("words_top5", "held-out words top-5", "words\ntop-5"),
    ("concepts_top1", "held-out concepts top-1", "concepts\ntop-1"),
    ("concepts_top5", "held-out concepts top-5", "concepts\ntop-5"),
)
PER_WORD = ("per_word", "per_held_out_word")  # per-word numbers: kept per model, not averaged into the curve


def _spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return {"mean": None, "min": None, "max": None, "values": []}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "values": values}


def _headline_numbers(setting: dict) -> dict:
    """The numbers of one run at one guidance scale."""
    out = {"fid": setting["fid"], "clip_score": setting["clip_score"], "kid": setting["kid"]}
    comp = setting.get("compositional")
    if comp:
        out["compositional_exact"] = comp["all"]["exact"]["accuracy"]
    syn = setting.get("synonyms")
    if syn:
        out.update(colour_trained=syn["trained_words"]["colour"]["accuracy"],
                   colour_synonyms=syn["colour_synonyms"]["colour"]["accuracy"],
                   shape_trained=syn["trained_words"]["shape"]["accuracy"],
                   shape_synonyms=syn["shape_synonyms"]["shape"]["accuracy"])
        out["per_word"] = {w: v["accuracy"] for w, v in syn["per_word"].items()}
    rec = setting.get("recognition")
    if rec:
        for kind in ("words", "concepts"):
            if kind in rec:
                out.update({f"{kind}_top{k}": rec[kind][f"top{k}"] for k in (1, 5)})
        out["per_held_out_word"] = rec["per_word_top5"]
    return out


def _chance(run: dict, headline_guidance: float) -> dict | None:
    """Chance recognition of a run's prompts (the same for every run of an experiment), or None."""
    for s in run["settings"]:
        if s["guidance"] == headline_guidance and s.get("recognition"):
            return {kind: {k: s["recognition"][kind][k] for k in ("chance_top1", "chance_top5")}
                    for kind in ("words", "concepts") if kind in s["recognition"]}
    return None


def _accuracy_columns(summary: list[dict]) -> list[tuple[str, str, str]]:
    """The accuracies some model has a number for: the shapes ones, the corpus ones, or none."""
    return [a for a in ACCURACIES + RECOGNITION
            if any((e["headline"] or {}).get(a[0], {}).get("mean") is not None for e in summary)]


def summarise(runs: list[dict], headline_guidance: float) -> list[dict]:
    """One entry per (group, model), in the order first met: its seeds, and per guidance scale the mean and
    spread of every number."""
    models: dict[tuple, dict] = {}
    for run in runs:
        key = (run.get("group", ""), run["name"])
        entry = models.setdefault(key, {"group": run.get("group", ""), "name": run["name"], "label": run["label"],
                                        "seeds": [], "runs": []})
        entry["seeds"].append(run["seed"])
        entry["runs"].append(run)
    out = []
    for entry in models.values():
        runs_ = entry.pop("runs")
        guidance = sorted({s["guidance"] for r in runs_ for s in r["settings"]})
        curve = []
        for w in guidance:
            numbers = [_headline_numbers(s) for r in runs_ for s in r["settings"] if s["guidance"] == w]
            names = [k for k in numbers[0] if k not in PER_WORD]
            curve.append({"guidance": w, **{k: _spread([n.get(k) for n in numbers]) for k in names}})
        head = next((c for c in curve if c["guidance"] == headline_guidance), None)
        per_word, held_out_words = {}, {}
        for r in runs_:
            for s in r["settings"]:
                if s["guidance"] == headline_guidance:
                    numbers = _headline_numbers(s)
                    for w, v in numbers.get("per_word", {}).items():
                        per_word.setdefault(w, []).append(v)
                    for w, v in numbers.get("per_held_out_word", {}).items():
                        held_out_words.setdefault(w, []).append(v)
        entry.update(
            curve=curve, headline=head, per_word={w: _spread(v) for w, v in per_word.items()},
            held_out_words={w: _spread(v) for w, v in held_out_words.items()},
            recognition_chance=_chance(runs_[0], headline_guidance),
            unet_parameters=runs_[0]["unet_parameters"], train_steps=runs_[0]["train_steps"],
            train_cpu_seconds=_spread([r["cpu_seconds"].get("train") for r in runs_]),
            evaluate_cpu_seconds=_spread([r["cpu_seconds"].get("evaluate") for r in runs_]),
            real_clip_score=runs_[0].get("real_clip_score"),
            **{k: runs_[0][k] for k in ("text_encoder", "unet_channels", "lr", "pretrained", "trained_with_generator")
               if k in runs_[0]})
        out.append(entry)
    return out


def _fmt(s: dict | None, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    if not s or s["mean"] is None:
        return "–"
    text = f"{scale * s['mean']:.{digits}f}"
    if len(s["values"]) > 1:
        text += f" ± {scale * (s['max'] - s['min']) / 2:.{digits}f}"
    return text + unit


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(title: str, summary: list[dict], meta: dict) -> str:
    """results.md: the headline table, the FID/CLIP-score curves, per-word synonym accuracy."""
    w = meta["headline_guidance"]
    seeds = sorted({s for e in summary for s in e["seeds"]})
    parts = [f"# {title}", "",
             f"Preset `{meta['preset']}`; seeds {', '.join(map(str, seeds))} (values: mean ± half the range over "
             f"seeds); N = {meta['n']} generated images per guidance scale for FID and CLIP score against "
             f"{meta['n_real']} real images; FID features and CLIP score from `{meta['fid_extractor']}` (in-domain, "
             f"comparable only within this folder).", ""]
    columns = _accuracy_columns(summary)
    if any(c in ACCURACIES for c in columns):
        parts[-2] += f" Accuracies are read by the shapes classifier at guidance {w:g}."
    if any(c in RECOGNITION for c in columns):
        parts[-2] += (f" Recognition at guidance {w:g}: the prompted concept among the 1 or 5 concepts whose nearest "
                      "corpus image is nearest the generated one, in the same CLIP's image features "
                      "(see `recognition.py`).")
    groups = list(dict.fromkeys(e["group"] for e in summary))
    header = ["model", "U-Net params", "steps", "train CPU min", f"FID ↓ (w={w:g})", f"CLIP score ↑ (w={w:g})",
              *(f"{t} ↑" for _, t, _ in columns)]
    rows = []
    for e in summary:
        h = e["headline"] or {}
        name = f"{e['group']}: {e['label']}" if len(groups) > 1 else e["label"]
        rows.append([name, f"{e['unet_parameters'] / 1e6:.2f} M", e["train_steps"],
                     _fmt(e["train_cpu_seconds"], 1 / 60, 1), _fmt(h.get("fid")), _fmt(h.get("clip_score")),
                     *(_fmt(h.get(k), 100, 1, " %") for k, _, _ in columns)])
    parts += ["## Headline", "", _md_table(header, rows), ""]
    reference = meta.get("recognition")
    if reference and any(c in RECOGNITION for c in columns):
        parts += [_recognition_note(summary, reference, w), ""]
    guidance = sorted({c["guidance"] for e in summary for c in e["curve"]})
    rows = []
    for e in summary:
        by_w = {c["guidance"]: c for c in e["curve"]}
        name = f"{e['group']}: {e['label']}" if len(groups) > 1 else e["label"]
        rows.append([name, *(f"{_fmt(by_w[g]['fid'], digits=1)} / {_fmt(by_w[g]['clip_score'], digits=2)}"
                             if g in by_w else "–" for g in guidance)])
    parts += ["## FID / CLIP score per guidance scale", "",
              _md_table(["model", *(f"w = {g:g}" for g in guidance)], rows), ""]
    words = list(dict.fromkeys(word for e in summary for word in e["per_word"]))
    if words:
        rows = [[f"{e['group']}: {e['label']}" if len(groups) > 1 else e["label"],
                 *(_fmt(e["per_word"].get(word), 100, 0, " %") for word in words)] for e in summary]
        parts += [f"## Held-out words at guidance {w:g}", "",
                  "Colour words are scored on the colour drawn, shape words on the shape of the object of the named "
                  "colour. None of these words occurs in the training captions (checked: see results.json, "
                  "`held_out`).", "", _md_table(["model", *words], rows), ""]
    return "\n".join(parts)


def _recognition_note(summary: list[dict], reference: dict, w: float) -> str:
    """What the recognition columns are measured against: chance, and the real images' ceiling."""
    text = (f"Held-out words: {reference['held_out_words']} prompts, each the word alone "
            f"(`{reference['word_template']}`); no training caption contains it. Held-out concepts: "
            f"{reference['held_out_concepts']} prompts, each a held-out concept's name. {reference['concepts']} "
            "concepts in all.")
    chance = next((e["recognition_chance"] for e in summary if e.get("recognition_chance")), None)
    if chance:
        text += " Chance (top-1 / top-5): " + ", ".join(
            f"{kind} {100 * c['chance_top1']:.2f} % / {100 * c['chance_top5']:.2f} %"
            for kind, c in chance.items()) + "."
    real = reference.get("real_held_out_images_recognised")
    if real:
        text += (f" Ceiling: a real held-out image, left out of the bank, is recognised as its own concept "
                 f"{100 * real['top1']:.1f} % / {100 * real['top5']:.1f} % of the time ({real['n']} images).")
    return text + f" Top-5 per held-out word at guidance {w:g}: results.json, `models[].held_out_words`."


def figure(summary: list[dict], path: Path, *, title: str, headline_guidance: float) -> None:
    """FID vs CLIP score (one panel per group, one curve per model, error bars: min–max over seeds) and the
    headline accuracies per model."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(e["group"] for e in summary))
    columns = _accuracy_columns(summary)
    has_acc = bool(columns)
    ncols = len(groups) + (1 if has_acc else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.4), dpi=110, squeeze=False)
    colours = plt.get_cmap("viridis")
    for gi, group in enumerate(groups):
        ax = axes[0][gi]
        if gi:  # the same axes in every FID panel, so that the groups compare at a glance
            ax.sharex(axes[0][0])
            ax.sharey(axes[0][0])
        entries = [e for e in summary if e["group"] == group]
        for i, e in enumerate(entries):
            c = _colour(summary, e, colours)
            xs = [p["clip_score"]["mean"] for p in e["curve"]]
            ys = [p["fid"]["mean"] for p in e["curve"]]
            xerr = [[p["clip_score"]["mean"] - p["clip_score"]["min"] for p in e["curve"]],
                    [p["clip_score"]["max"] - p["clip_score"]["mean"] for p in e["curve"]]]
            yerr = [[p["fid"]["mean"] - p["fid"]["min"] for p in e["curve"]],
                    [p["fid"]["max"] - p["fid"]["mean"] for p in e["curve"]]]
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o-", color=c, ms=4, lw=1.5, capsize=2, label=e["label"])
            if i == len(entries) - 1:
                for p, x, y in zip(e["curve"], xs, ys):
                    ax.annotate(f"w={p['guidance']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.set_xlabel("CLIP score ↑")
        ax.set_ylabel("FID ↓")
        ax.set_title((f"{group}: " if group else "") + "FID vs CLIP score over guidance scales w", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if has_acc:
        ax = axes[0][-1]
        keys = [(k, bar) for k, _, bar in columns]
        width = 0.8 / len(summary)
        for i, e in enumerate(summary):
            h = e["headline"] or {}
            means = [100 * (h.get(k) or {}).get("mean", 0) or 0 for k, _ in keys]
            lo = [m - 100 * ((h.get(k) or {}).get("min") or 0) for m, (k, _) in zip(means, keys)]
            hi = [100 * ((h.get(k) or {}).get("max") or 0) - m for m, (k, _) in zip(means, keys)]
            ax.bar([j + (i - (len(summary) - 1) / 2) * width for j in range(len(keys))], means, width,
                   yerr=[lo, hi], capsize=2, color=_colour(summary, e, colours),
                   hatch="//" if groups.index(e["group"]) else None, edgecolor="white", linewidth=0)
        ax.set_xticks(range(len(keys)), [bar for _, bar in keys], fontsize=7)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        hatched = f" (hatched: {', '.join(groups[1:])})" if len(groups) > 1 else ""
        ax.set_title(f"accuracy at guidance {headline_guidance:g}{hatched}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _colour(summary: list[dict], entry: dict, cmap):
    """One colour per model name, the same in every panel (small to large: dark to light)."""
    names = list(dict.fromkeys(e["name"] for e in summary))
    return cmap(names.index(entry["name"]) / max(1, len(names) - 1) * 0.9)


def write_results(folder: Path, title: str, runs: list[dict], meta: dict) -> dict:
    """results.json, results.md and figure.png in `folder`, from the runs finished so far."""
    summary = summarise(runs, meta["headline_guidance"])
    first = runs[0]
    meta = {**meta, "n": first["n"], "n_real": first["n_real"], "fid_extractor": first["fid_extractor"]}
    results = {"title": title, **meta, "models": summary, "runs": runs}
    tmp = folder / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, folder / "results.json")
    (folder / "results.md").write_text(markdown(title, summary, meta) + "\n")
    figure(summary, folder / "figure.png", title=title, headline_guidance=meta["headline_guidance"])
    return results

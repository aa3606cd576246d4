"""report.html: tables of every setting's metrics, the two curves as PNG plots, sample grids per prompt."""

from __future__ import annotations

import html
from pathlib import Path

from t2i.images import grid, slug

ATTRIBUTE_ORDER = ("count", "colour", "shape", "size", "position", "relation", "exact")


def label(setting: dict) -> str:
    """"dpmpp_2m, 20 steps, guidance 2" (a variant without some of these settings shows "–")."""
    def show(v):
        return "–" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return f"{show(setting['sampler'])}, {show(setting['steps'])} steps, guidance {show(setting['guidance'])}"


def _plot_fid_vs_clip(points: list[dict], path: Path) -> None:
    """Imagen's trade-off curve: one point per guidance scale, CLIP score (x) against FID (y)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    points = sorted(points, key=lambda p: p["guidance"])
    ax.plot([p["clip_score"] for p in points], [p["fid"] for p in points], "o-")
    for p in points:
        ax.annotate(f"w={p['guidance']:g}", (p["clip_score"], p["fid"]), textcoords="offset points", xytext=(4, 4))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.set_xlabel("CLIP score (higher: closer to the prompt)")
    ax.set_ylabel("FID (lower: closer to the data)")
    ax.set_title("FID vs CLIP score over guidance scales")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_fid_vs_nfe(points: list[dict], path: Path) -> None:
    """One line per sampler: FID against the number of network evaluations (one per step here)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for sampler in sorted({p["sampler"] for p in points}):
        line = sorted((p for p in points if p["sampler"] == sampler), key=lambda p: p["nfe"])
        ax.plot([p["nfe"] for p in line], [p["fid"] for p in line], "o-", label=sampler)
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations (steps; guidance batched in one)")
    ax.set_ylabel("FID")
    ax.set_title("FID vs NFE")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def curves(settings: list[dict]) -> tuple[list[dict], list[dict]]:
    """The settings that form each curve: the guidance sweep (same sampler and steps, several guidance scales)
    and the sampler × steps sweep (same guidance, several step counts)."""
    if not settings:
        return [], []
    first = settings[0]
    guidance = [s for s in settings if (s["sampler"], s["steps"]) == (first["sampler"], first["steps"])]
    by_guidance: dict[float, list[dict]] = {}
    for s in settings:
        by_guidance.setdefault(s["guidance"], []).append(s)
    nfe = max(by_guidance.values(), key=lambda group: len({(s["sampler"], s["steps"]) for s in group}))
    return (guidance if len({s["guidance"] for s in guidance}) > 1 else [],
            nfe if len({s["steps"] for s in nfe}) > 1 else [])


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(summary: dict, name: str) -> str:
    v = summary.get(name)
    return f"{100 * v['accuracy']:.1f} % ({v['n']})" if v else "–"


def render_report(folder: Path, metrics: dict, samples: dict) -> None:
    """Write report.html and its PNGs into `folder`."""
    settings = metrics["settings"]
    guidance_curve, nfe_curve = curves(settings)
    parts = [f"<h1>t2i evaluation: {html.escape(metrics['model'])}</h1>",
             "<p>Data: {data} (fingerprint {fp}); {n} generated images per setting (prompts: the data's captions, "
             "seeds {seed}…), {n_real} real images. FID/KID features: <b>{fx}</b>. CLIP score: <b>{clip}</b>. "
             "FIDs from different extractors or different N are not comparable; in-domain CLIP FIDs are not "
             "comparable with published Inception FIDs.</p>".format(
                 data=html.escape(metrics["data"]), fp=metrics["data_fingerprint"], n=metrics["n"],
                 seed=metrics["seed"], n_real=metrics["n_real"], fx=html.escape(metrics["fid_extractor"]),
                 clip=html.escape(metrics["clip_model"]))]
    rows = [[s["sampler"], s["steps"], s["guidance"], s["n"], f"{s['fid']:.2f}",
             f"{s['kid']:.4f} ± {s['kid_std']:.4f}", f"{s['clip_score']:.2f}", f"{s['clip_score_shuffled']:.2f}",
             _pct(s["compositional"]["all"], "exact") if "compositional" in s else "–", s["seconds"]]
            for s in settings]
    real = metrics["real"]
    rows.append(["real images", "", "", real["n"], "", "", f"{real['clip_score']:.2f}",
                 f"{real['clip_score_shuffled']:.2f}", "", ""])
    split = f" Data split: <b>{html.escape(metrics['split'])}</b>." if metrics.get("split") else ""
    parts += ["<h2>Metrics per setting</h2>",
              f"<p>CLIP score with shuffled captions: the same images scored against other images' prompts, the "
              f"floor a CLIP score must rise above.{split}</p>",
              _table(rows, ["sampler", "steps", "guidance", "N", "FID ↓", "KID ↓", "CLIP score ↑",
                            "shuffled captions", "compositional exact ↑", "seconds"])]
    if guidance_curve:
        _plot_fid_vs_clip(guidance_curve, folder / "fid_vs_clip_score.png")
        parts += ["<h2>FID vs CLIP score (guidance sweep)</h2>",
                  "<p>Each point is one guidance scale w. Moving right, images match their prompts better; moving "
                  "down, they match the data's distribution better. Guidance typically buys CLIP score with FID: "
                  "the best trade-off is the knee of the curve.</p>",
                  '<img src="fid_vs_clip_score.png" alt="FID vs CLIP score">']
    if nfe_curve:
        _plot_fid_vs_nfe(nfe_curve, folder / "fid_vs_nfe.png")
        parts += ["<h2>FID vs number of network evaluations</h2>",
                  "<p>One line per sampler. Where a line flattens, more steps stop paying; a line lower at few "
                  "steps is the faster sampler.</p>", '<img src="fid_vs_nfe.png" alt="FID vs NFE">']
    if any("compositional" in s for s in settings):
        parts.append("<h2>Compositional accuracy (shapes, held-out prompts)</h2>")
        c = metrics.get("classifier") or {}
        own = c.get("accuracy_on_renders", {})
        header = ["setting", "images", *ATTRIBUTE_ORDER]
        rows = []
        for s in settings:
            if "compositional" not in s:
                continue
            for part in ("all", "seen_in_training", "absent_from_training"):
                summary = s["compositional"][part]
                n = summary.get("exact", {}).get("n", 0)
                rows.append([f"{label(s)} · {part.replace('_', ' ')}", n,
                             *(_pct(summary, a) for a in ATTRIBUTE_ORDER)])
        if own:
            rows.append([f"classifier on {own['n']} fresh renders (its own accuracy)", own["n"],
                         *(f"{100 * own[a]:.1f} %" if a in own else "–" for a in ATTRIBUTE_ORDER)])
        parts += ["<p>Each attribute is scored over the images whose prompt names it (count in brackets); "
                  "exact = every named attribute right. 'absent from training' prompts name a combination no "
                  "training image has. The last row is the classifier's accuracy on real renders: the ceiling.</p>",
                  _table(rows, header)]
    parts.append("<h2>Samples</h2>")
    grids = folder / "grids"
    grids.mkdir()
    for index, s in enumerate(settings):
        parts.append(f"<h3>{html.escape(label(s))}</h3>")
        held = samples.get(index, {}).get("held_out", {})
        for prompt, images in list(held.items())[:: max(1, len(held) // 12)][:12]:
            name = f"grids/{index}_{slug(prompt)}.png"
            grid(images, scale=3).save(folder / name)
            parts.append(f'<figure><img src="{name}"><figcaption>{html.escape(prompt)}</figcaption></figure>')
        captions = samples.get(index, {}).get("captions", [])
        if captions:
            name = f"grids/{index}_captions.png"
            grid([img for _, img in captions], cols=8, scale=3).save(folder / name)
            listing = "<br>".join(f"{k}: {html.escape(p)}" for k, (p, _) in enumerate(captions))
            parts.append(f'<figure><img src="{name}"><figcaption>data captions, row by row:<br>{listing}'
                         "</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:6px}"
             "figcaption{font-size:12px;max-width:400px}img{image-rendering:pixelated}")
    (folder / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>t2i evaluation</title>"
                                        f"<style>{style}</style>" + "\n".join(parts) + "\n", encoding="utf-8")

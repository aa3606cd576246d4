"""SVG to pixels: Iconify icons as SVG documents, rasterised with resvg.

resvg (the Rust renderer, through the `resvg-py` wheel) was chosen over CairoSVG by
benchmarks/svg_rasterisers.py (docs/corpus.md has the table): it renders 2-2.5 times faster on every set,
and it draws SVG filters, which CairoSVG ignores (on the Fluent colour set 22 of 150 CairoSVG images were
below 20 dB PSNR against librsvg, flat where the design has soft highlights; resvg's worst was 23 dB). It is
also a self-contained wheel (CairoSVG needs Debian's libcairo2). Fonts are never loaded: no emoji SVG here
draws text, and loading the system fonts would cost more than rendering.
"""

from __future__ import annotations

import io

from PIL import Image


class SvgError(ValueError):
    """An SVG document that the renderer refuses or that draws nothing."""


def iconify_svg(icon: dict, width: float, height: float) -> str:
    """An Iconify icon ({"body": ..., optional "left", "top", "width", "height"}) as a standalone SVG document;
    `width`/`height` are the icon set's defaults (its root "width"/"height")."""
    body = icon.get("body")
    if not isinstance(body, str) or not body.strip():
        raise SvgError("icon has no body")
    left, top = icon.get("left", 0), icon.get("top", 0)
    w, h = icon.get("width", width), icon.get("height", height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{w}" height="{h}" viewBox="{left} {top} {w} {h}">{body}</svg>')


def svg_size(svg: str) -> tuple[float, float]:
    """The (width, height) an `iconify_svg` document declares."""
    head = svg[: svg.index(">")]
    return float(head.split('width="')[1].split('"')[0]), float(head.split('height="')[1].split('"')[0])


def render_svg(svg: str, pixels: int) -> Image.Image:
    """The SVG drawn so that its longer side is `pixels`, as RGBA with its transparency kept."""
    import resvg_py

    w, h = svg_size(svg)
    scale = pixels / max(w, h)
    try:
        png = resvg_py.svg_to_bytes(svg_string=svg, width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                                    skip_system_fonts=True)
    except (ValueError, RuntimeError) as e:
        raise SvgError(f"resvg cannot render it: {e}") from None
    image = Image.open(io.BytesIO(bytes(png)))
    image.load()
    return image.convert("RGBA")

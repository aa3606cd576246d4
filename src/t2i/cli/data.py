"""`t2i data`: make or import a captioned image dataset."""

from __future__ import annotations

from pathlib import Path

from t2i.cli.common import Help, fraction, positive_int


def register(sub) -> None:
    data = sub.add_parser("data", help="make or import a captioned image dataset",
                          description="Every source writes the same layout: DIR/metadata.jsonl (Hugging Face "
                          "imagefolder: file_name, text, extra fields) + DIR/images/*.png + DIR/info.json.")
    dsub = data.add_subparsers(dest="source", required=True, metavar="SOURCE")
    s = dsub.add_parser("shapes", formatter_class=Help, help="procedural coloured shapes with compositional captions",
                        description="One or two coloured shapes per image with captions such as 'a small red circle "
                        "above a large blue square' and ground-truth attributes in metadata.jsonl. Same seed, same bytes.")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--n", type=positive_int, default=4000, help="number of images")
    s.add_argument("--size", type=positive_int, default=32, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--p-two", type=fraction, default=0.5, help="probability that an image holds two shapes")
    e = dsub.add_parser("emoji", formatter_class=Help, help="a colour-emoji font rendered to captioned images",
                        description="Renders Noto Color Emoji (Debian package fonts-noto-color-emoji): every emoji "
                        "of the emoji package's list that the font draws as one glyph (single code points, skin tones, "
                        "flags, keycaps, ZWJ sequences), captioned with its CLDR name in plain words ('thumbs up, "
                        "medium skin tone'), plus its Unicode name and aliases in a 'captions' field. A fixed tenth, "
                        "chosen by a hash of the code points, is marked \"split\": \"held_out\"; training commands "
                        "leave it out (--split train).")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument("--size", type=positive_int, default=32, help="image side in pixels")
    e.add_argument("--font", type=Path, default=None, help="path of a colour emoji font (default: found automatically)")
    e.add_argument("--limit", type=positive_int, default=None, help="render only the first N emoji")
    i = dsub.add_parser("import", formatter_class=Help, help="copy any captioned image folder into the layout",
                        description="Reads metadata.jsonl (file_name, text) or .txt caption sidecars, skips and "
                        "counts unreadable, truncated or oversized images, and writes SIZE×SIZE PNGs.")
    i.add_argument("--src", required=True, type=Path, help="folder of images with captions")
    i.add_argument("--out", required=True, type=Path, help="output folder")
    i.add_argument("--size", type=positive_int, default=32, help="image side in pixels (short side resized, centre crop)")
    i.add_argument("--max-failure-rate", type=fraction, default=0.1, help="abort above this share of bad images")
    c = dsub.add_parser("check", formatter_class=Help, help="scan a dataset folder and report what is usable")
    c.add_argument("folder", type=Path)
    c.add_argument("--max-failure-rate", type=fraction, default=0.1, help="fail above this share of bad images")
    data.set_defaults(run=run)


def run(args, command: str) -> None:
    from t2i import data
    from t2i.images import load_image

    if args.source == "shapes":
        out = data.write_shapes(args.out, data.ShapesConfig(n=args.n, size=args.size, seed=args.seed, p_two=args.p_two))
    elif args.source == "emoji":
        out = data.write_emoji(args.out, args.size, font=args.font, limit=args.limit)
    elif args.source == "import":
        records, report = data.scan_folder(args.src, max_failure_rate=args.max_failure_rate)
        print(report.summary())
        items = ((load_image(r.path, args.size), r.caption, r.extra) for r in records)
        out = data.write_layout(args.out, items, {"source": "import", "from": str(args.src), "size": args.size,
                                                   "scan": report.summary()})
    else:  # check
        records, report = data.scan_folder(args.folder, max_failure_rate=args.max_failure_rate)
        print(report.summary())
        print(f"fingerprint: {data.dataset_fingerprint(args.folder)}")
        return
    print(f"wrote {out}")

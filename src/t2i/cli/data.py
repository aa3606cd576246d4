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
                        "medium skin tone'), plus its Unicode name and aliases in a 'captions' field. A fixed tenth of "
                        "concept families (an emoji with its skin-tone, gender and hair variants), chosen by a hash, "
                        "is marked \"split\": \"held_out\"; training commands leave it out (--split train).")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument("--size", type=positive_int, default=32, help="image side in pixels")
    e.add_argument("--font", type=Path, default=None, help="path of a colour emoji font (default: found automatically)")
    e.add_argument("--limit", type=positive_int, default=None, help="render only the first N emoji")
    e.add_argument("--split-rule", choices=("v1", "v2"), default="v2",
                   help="v2: held out by concept family; v1: the first rule (skin tones only), which the shipped "
                   "emoji model was trained and evaluated on")
    es = dsub.add_parser("emoji-sets", formatter_class=Help, help="one corpus from several published emoji sets (SVG)",
                         description="Renders published emoji sets (Iconify JSON packages from npm, fetched once into "
                         "a cache with `npm pack`) into one corpus: every image captioned with its name, its name with "
                         "the set's style ('grinning face, twemoji style'), aliases, CLDR keywords and group; every row "
                         "with its set, licence and attribution; LICENSES.md and held_out_words.json beside the data. "
                         "A tenth of concept families (every style, skin tone, gender and hair variant together) is "
                         "marked \"split\": \"held_out\". docs/corpus.md lists the sets and their licences.")
    es.add_argument("--out", type=Path, default=None, help="output folder (needed unless --fetch-only)")
    es.add_argument("--sets", default=None, help="comma-separated set names, or all; an unknown name lists the known ones "
                    "(default: noto,noto-v1,twemoji,fluent-flat,fluent,emojione, the sets without ShareAlike)")
    es.add_argument("--size", type=positive_int, default=64, help="image side in pixels")
    es.add_argument("--limit", type=positive_int, default=None, help="at most N images per set")
    es.add_argument("--from", dest="from_dir", metavar="DIR", type=Path, default=None,
                    help="folder (or .tgz) holding the packages: npm pack tarballs or node_modules/@iconify-json/...")
    es.add_argument("--cache-dir", type=Path, default=None, help="package cache (default: ~/.cache/t2i/npm)")
    es.add_argument("--max-failure-rate", type=fraction, default=0.05,
                    help="abort when more than this share of a set's SVGs fails to render")
    es.add_argument("--offline", action="store_true", help="never run npm: use --from and the cache only")
    es.add_argument("--fetch-only", action="store_true", help="fetch the packages into the cache and stop")
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


def _emoji_sets_run(args) -> Path | None:
    from t2i.data import DataError
    from t2i.data.emoji_sets import DEFAULT_SETS, EMOJI_SETS, EmojiSetsConfig, fetch_emoji_sets, write_emoji_sets

    if args.sets == "all":
        sets = tuple(EMOJI_SETS)
    else:
        sets = DEFAULT_SETS if args.sets is None else tuple(s.strip() for s in args.sets.split(",") if s.strip())
    if args.fetch_only:
        for line in fetch_emoji_sets(sets, source=args.from_dir, cache_dir=args.cache_dir, download=not args.offline):
            print(line)
        return None
    if args.out is None:
        raise DataError("t2i data emoji-sets needs --out (or --fetch-only)")
    cfg = EmojiSetsConfig(sets=sets, size=args.size, limit=args.limit, max_failure_rate=args.max_failure_rate)
    return write_emoji_sets(args.out, cfg, source=args.from_dir, cache_dir=args.cache_dir, download=not args.offline)


def run(args, command: str) -> None:
    from t2i import data
    from t2i.images import load_image

    if args.source == "shapes":
        out = data.write_shapes(args.out, data.ShapesConfig(n=args.n, size=args.size, seed=args.seed, p_two=args.p_two))
    elif args.source == "emoji":
        out = data.write_emoji(args.out, args.size, font=args.font, limit=args.limit, split_rule=args.split_rule)
    elif args.source == "emoji-sets":
        out = _emoji_sets_run(args)
        if out is None:
            return
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

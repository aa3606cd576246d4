"""`t2i train COMPONENT`: each component is trained on its own; one `register_*` per component."""

from __future__ import annotations

from pathlib import Path

from t2i.cli.common import (
    Help,
    add_split_flag,
    add_train_flags,
    fraction,
    is_main_process,
    non_negative_float,
    non_negative_int,
    positive_int,
    report_stop,
    split_arg,
    train_config,
)


DATA_HELP = ("dataset: an imagefolder (metadata.jsonl or .txt sidecars), WebDataset .tar shards (a file or a "
             "folder of them), or a Hugging Face datasets folder from save_to_disk")


def register(sub) -> None:
    train = sub.add_parser("train", help="train one component",
                           description="Components are trained separately. Latent variant: the autoencoder on images "
                           "alone, then the generator on its latents with a text encoder's embeddings. Cascade variant: "
                           "the base on small images with the text, the upsamplers on images alone. Tokens variant "
                           "(DALL-E's): `vq` on images alone, then `tokens` on its token grids.")
    tsub = train.add_subparsers(dest="component", required=True, metavar="COMPONENT")
    register_text_encoder(tsub)
    register_autoencoder(tsub)
    register_generator(tsub)
    register_base(tsub)
    register_upsampler(tsub)
    register_clip(tsub)
    register_shapes_classifier(tsub)
    register_vq(tsub)
    register_tokens(tsub)
    register_preview_decoder(tsub)


def register_text_encoder(tsub) -> None:
    t = tsub.add_parser("text-encoder", formatter_class=Help,
                        help="component 1: the pretrained MiniLM cut to its first layers (frozen, nothing trained)",
                        description="Writes all-MiniLM-L6-v2 (bundled) keeping its first --layers of 6 transformer "
                        "layers, weights unchanged, as a folder that --text-encoder accepts. Nothing is trained: the "
                        "encoder stays frozen. t2i demo uses 3 layers (higher colour accuracy and CLIP score on shapes "
                        "than all 6; see docs/demo-recipe.md).")
    t.add_argument("--out", required=True, type=Path, help="folder to write: new, empty, or one this command wrote "
                   "(it carries t2i_minilm_cut.json; reused at the same depth, rewritten at another)")
    t.add_argument("--layers", type=positive_int, default=3, help="transformer layers kept (1 to 6)")
    t.set_defaults(run=run_text_encoder)


def run_text_encoder(args, command: str) -> None:
    from t2i.text.cut import truncated_minilm

    print(f"text encoder: MiniLM's first {args.layers} of 6 layers, wrote {truncated_minilm(args.layers, args.out)}")


def register_autoencoder(tsub) -> None:
    a = tsub.add_parser("autoencoder", formatter_class=Help, help="the decoder: a KL autoencoder, images only",
                        description="Trains diffusers' AutoencoderKL with MSE reconstruction + a light KL, measures "
                        "the latent scaling factor on the data and held-out PSNR, and saves a component folder.")
    a.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    add_split_flag(a)
    a.add_argument("--out", required=True, type=Path, help="component folder to write")
    a.add_argument("--preset", choices=["tiny", "small", "medium", "base"], default="small", help="model size")
    a.add_argument("--size", type=positive_int, default=32, help="training resolution in pixels")
    add_train_flags(a, steps=800, batch_size=16, lr=2e-3, ema=0.0)
    a.add_argument("--pixel-loss", choices=["mse", "l1"], default="mse", help="reconstruction loss")
    a.add_argument("--kl-weight", type=float, default=1e-5, help="weight of the KL term")
    a.add_argument("--normalise-channels", action="store_true",
                   help="fold per-channel latent mean/std into the weights (exact; did not help on shapes)")
    a.set_defaults(run=run_autoencoder)


def run_autoencoder(args, command: str) -> None:
    from t2i.autoencoder import AUTOENCODER_PRESETS, AutoencoderTrainConfig, train_autoencoder

    cfg = AutoencoderTrainConfig(model=AUTOENCODER_PRESETS[args.preset](args.size), train=train_config(args),
                                 kl_weight=args.kl_weight, pixel_loss=args.pixel_loss,
                                 normalise_channels=args.normalise_channels)
    info = train_autoencoder(args.data, args.out, cfg, command=command, resume=args.resume,
                             reset_data_position=args.reset_data_position, split=split_arg(args))
    if report_stop(info, command) or not is_main_process():
        return
    print(f"autoencoder: held-out PSNR {info['metrics']['psnr_held_out']:.2f} dB, "
          f"latent scaling factor {info['latent_scaling_factor']:.4f}, wrote {args.out}")


MIN_SNR_DEFAULT = 5.0  # GeneratorConfig's min_snr_gamma (names only here: --help imports no torch)


def add_text_conditioned_flags(p, presets: tuple[str, ...] = ("tiny", "small", "base")) -> None:
    """The flags of a text-conditioned diffusion U-Net (the latent generator, the cascade's base); `presets`: the
    names of its size presets (names only: --help imports no torch)."""
    p.add_argument("--text-encoder", default="minilm",
                   help="'minilm' (pretrained, bundled), 'mpnet' (all-mpnet-base-v2, pretrained, opt-in: make mpnet), "
                   "'scratch' (trained jointly), or a local transformers folder (such as one from t2i train "
                   "text-encoder)")
    p.add_argument("--max-length", type=positive_int, default=32, help="prompt length in tokens")
    p.add_argument("--preset", choices=presets, default="small", help="U-Net size")
    p.add_argument("--prediction", choices=["v_prediction", "epsilon"], default="v_prediction",
                   help="what the network predicts")
    p.add_argument("--caption-dropout", type=fraction, default=0.1, help="share of empty-prompt training samples")
    p.add_argument("--beta-schedule", choices=["squaredcos_cap_v2", "scaled_linear", "linear"],
                   default="squaredcos_cap_v2", help="noise schedule: cosine (Nichol & Dhariwal; ends in pure noise) "
                   "or Stable Diffusion's scaled_linear")
    p.add_argument("--min-snr-gamma", type=float, default=MIN_SNR_DEFAULT,
                   help="Min-SNR-γ loss weighting (0: plain MSE); for the diffusion objective only (flow: unweighted)")


def text_conditioned_config(args, presets):
    """The U-Net config (GeneratorConfig) and text encoder config from `add_text_conditioned_flags`."""
    from t2i.text import TextEncoderConfig

    model = presets[args.preset]()
    model.prediction_type, model.caption_dropout = args.prediction, args.caption_dropout
    objective = getattr(args, "objective", "diffusion")
    model.objective = objective
    if objective == "flow" and args.min_snr_gamma not in (0.0, MIN_SNR_DEFAULT):
        raise ValueError(f"--min-snr-gamma {args.min_snr_gamma} weighs the diffusion objective; flow trains unweighted")
    model.min_snr_gamma = args.min_snr_gamma if objective == "diffusion" else 0.0
    model.schedule.beta_schedule = args.beta_schedule
    return model, TextEncoderConfig(source=args.text_encoder, max_length=args.max_length)


def register_generator(tsub) -> None:
    g = tsub.add_parser("generator", formatter_class=Help, help="the latent diffusion U-Net, text-conditioned",
                        description="Caches the autoencoder's latents and the text encoder's embeddings once, then "
                        "trains a UNet2DConditionModel (or, with --backbone transformer, a PixArtTransformer2DModel) "
                        "with caption dropout (for classifier-free guidance) and EMA.")
    g.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    add_split_flag(g)
    g.add_argument("--autoencoder", required=True, type=Path, help="autoencoder component folder")
    g.add_argument("--out", required=True, type=Path, help="component folder to write")
    add_text_conditioned_flags(g, presets=("tiny", "small", "medium", "base"))
    g.add_argument("--backbone", choices=["unet", "transformer"], default="unet",
                   help="unet: UNet2DConditionModel; transformer: PixArt-α's DiT over 2×2 latent patches with "
                   "cross-attention to the text (PixArtTransformer2DModel; presets tiny and small; docs/training.md)")
    g.add_argument("--objective", choices=["diffusion", "flow"], default="diffusion",
                   help="diffusion: the VP schedule with --prediction (and Min-SNR); flow: rectified flow with "
                   "logit-normal timesteps (SD3), sampled with flow_euler / flow_heun (--prediction, --beta-schedule "
                   "and --min-snr-gamma do not apply)")
    g.add_argument("--patch-mask-ratio", type=fraction, default=0.0,
                   help="transformer only: drop this share of the latent patches after the first --patch-mixer-layers "
                   "blocks while training (MicroDiT's deferred masking: cheaper steps; the loss covers the kept "
                   "patches; sampling uses them all). 0: off")
    g.add_argument("--patch-mixer-layers", type=non_negative_int, default=1,
                   help="transformer blocks that see every patch before the masking")
    g.add_argument("--pooled-text-heads", type=int, default=0,
                   help="also add an attention-pooled summary of the prompt to the timestep embedding, with this many "
                   "heads (must divide the text width; 0: cross-attention only). diffusers' pipeline runs either")
    add_train_flags(g, steps=1500, batch_size=64, lr=2e-3, ema=0.999)
    g.add_argument("--sample-every", type=non_negative_int, default=0,
                   help="steps between sample grids of four training captions in OUT/samples (0: none)")
    g.add_argument("--cache-dir", type=Path, default=None, help="where latents/embeddings are cached (default OUT/cache)")
    g.add_argument("--cache-shard-rows", type=positive_int, default=4096,
                   help="samples per cache shard file; shards are what several processes split between them")
    g.add_argument("--pipeline-out", type=Path, default=None, help="also compose a ready pipeline folder here")
    g.add_argument("--eval-every", type=int, default=0,
                   help="every N steps, FID and CLIP score on --eval-images images (current weights), to eval_log.csv")
    g.add_argument("--eval-images", type=positive_int, default=100, help="images per check during training (≥ 50)")
    g.add_argument("--eval-clip", type=Path, default=None, help="CLIP folder for those checks (t2i train clip)")
    g.add_argument("--repa-weight", type=non_negative_float, default=0.5,
                   help="REPA: also pull the U-Net's middle block (the transformer's block a third of the way up) "
                   "towards a frozen encoder's features of the clean image, with this weight (the paper's; 0: off, "
                   "the recipe before REPA). The projector it trains is not saved (docs/training.md)")
    g.add_argument("--repa-target", default="autoencoder", metavar="autoencoder|CLIP_FOLDER",
                   help="the frozen encoder REPA aligns to: the autoencoder's encoder, or a CLIP model folder "
                   "(t2i train clip, or a real CLIP on disk)")
    g.set_defaults(run=run_generator)


def run_generator(args, command: str) -> None:
    from t2i.diffusion.transformer import TRANSFORMER_PRESETS
    from t2i.diffusion.unet import GENERATOR_PRESETS
    from t2i.latent.train import GeneratorTrainConfig, train_generator

    presets = TRANSFORMER_PRESETS if args.backbone == "transformer" else GENERATOR_PRESETS
    if args.preset not in presets:
        raise ValueError(f"--preset {args.preset}: the {args.backbone} backbone has presets {', '.join(presets)}")
    model, text = text_conditioned_config(args, presets)
    model.pooled_text_heads = args.pooled_text_heads
    model.patch_mask_ratio, model.patch_mixer_layers = args.patch_mask_ratio, args.patch_mixer_layers
    cfg = GeneratorTrainConfig(model=model, text=text, train=train_config(args, sample_every=args.sample_every),
                               cache_shard_rows=args.cache_shard_rows, eval_every=args.eval_every,
                               eval_images=args.eval_images, eval_clip=str(args.eval_clip) if args.eval_clip else None,
                               repa_weight=args.repa_weight, repa_target=args.repa_target)
    make_evaluator = None
    if cfg.eval_every > 0:
        from t2i.evaluation.during_training import periodic_evaluator

        make_evaluator = periodic_evaluator(args.data, cfg, args.out)
    info = train_generator(args.data, args.autoencoder, args.out, cfg, cache_dir=args.cache_dir, command=command,
                           resume=args.resume, reset_data_position=args.reset_data_position, split=split_arg(args),
                           make_evaluator=make_evaluator)
    if report_stop(info, command) or not is_main_process():
        return
    print(f"generator: final loss {info['metrics']['final_loss']:.4f}, wrote {args.out}")
    if args.pipeline_out:
        from t2i.latent.compose import compose

        print(f"pipeline: wrote {compose(args.out, args.pipeline_out)}")


def register_base(tsub) -> None:
    b = tsub.add_parser("base", formatter_class=Help, help="the cascade's base: a pixel diffusion U-Net, text-conditioned",
                        description="Trains the first stage of the cascade (Imagen's) variant: a UNet2DConditionModel "
                        "that draws small RGB images (e.g. 16×16) from text, with the same text caching, caption "
                        "dropout and EMA as the latent generator. Upsamplers (t2i train upsampler) enlarge its images.")
    b.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    add_split_flag(b)
    b.add_argument("--out", required=True, type=Path, help="component folder to write")
    b.add_argument("--size", type=positive_int, default=16, help="side of the small images it draws, in pixels")
    add_text_conditioned_flags(b, presets=("tiny", "small", "medium", "base"))
    b.add_argument("--pooled-text-heads", type=non_negative_int, default=0,
                   help="also add an attention-pooled summary of the prompt to the timestep embedding, as Imagen's "
                   "and DeepFloyd IF's bases do, with this many heads (must divide the text width; 0: "
                   "cross-attention only)")
    b.add_argument("--random-flip", type=fraction, default=0.0,
                   help="mirror each training image left to right with this probability (diffusers' --random_flip), "
                   "except images whose captions name a direction, flag, keycap, clock, letters or text; 0: never")
    add_train_flags(b, steps=1200, batch_size=64, lr=2e-3, ema=0.999)
    b.add_argument("--cache-dir", type=Path, default=None, help="where text embeddings are cached (default OUT/cache)")
    b.set_defaults(run=run_base)


def run_base(args, command: str) -> None:
    from t2i.cascade.train import BASE_PRESETS, BaseTrainConfig, train_base

    model, text = text_conditioned_config(args, BASE_PRESETS)
    model.pooled_text_heads = args.pooled_text_heads
    cfg = BaseTrainConfig(image_size=args.size, random_flip=args.random_flip, model=model, text=text,
                          train=train_config(args))
    info = train_base(args.data, args.out, cfg, cache_dir=args.cache_dir, command=command, resume=args.resume,
                      reset_data_position=args.reset_data_position, split=split_arg(args))
    if report_stop(info, command) or not is_main_process():
        return
    print(f"base: final loss {info['metrics']['final_loss']:.4f}, {args.size}×{args.size} images, wrote {args.out}")


def register_upsampler(tsub) -> None:
    u = tsub.add_parser("upsampler", formatter_class=Help, help="a cascade stage: super-resolution diffusion, "
                        "optionally text-conditioned",
                        description="Trains a super-resolution diffusion U-Net on (small, large) pairs made from any "
                        "image source. The enlarged small image is concatenated to the noisy "
                        "input after noise-conditioning augmentation: in training it is noised to a random level "
                        "(given to the network); at sampling a fixed level is used. With --text-encoder it also "
                        "gets the caption (attention-pooled into its timestep embedding, as Imagen's "
                        "super-resolution U-Nets): give it the base's encoder and --max-length. Reports held-out "
                        "PSNR against bicubic enlargement. Stages chain: train 16→32 and 32→64 for a 64 px cascade.")
    u.add_argument("--data", required=True, type=Path, help=DATA_HELP + " (captions used only with --text-encoder)")
    add_split_flag(u)
    u.add_argument("--out", required=True, type=Path, help="component folder to write")
    u.add_argument("--low-size", type=positive_int, default=16, help="side of the input images, in pixels")
    u.add_argument("--size", type=positive_int, default=32, help="side of the output images, a multiple of --low-size")
    u.add_argument("--preset", choices=["tiny", "small", "base"], default="small", help="U-Net size")
    u.add_argument("--prediction", choices=["sample", "v_prediction", "epsilon"], default="sample",
                   help="what the network predicts ('sample': the clean image x0)")
    u.add_argument("--min-snr-gamma", type=float, default=0.0, help="Min-SNR-γ loss weighting (0: plain MSE)")
    u.add_argument("--max-noise-level", type=non_negative_int, default=250,
                   help="training augmentation levels are drawn from 0..this (timesteps of the cosine schedule; "
                   "250 leaves signal 0.92, noise 0.39)")
    u.add_argument("--noise-level", type=non_negative_int, default=50,
                   help="the fixed augmentation level used at sampling, recorded in the component (50: noise 0.09)")
    u.add_argument("--text-encoder", default=None,
                   help="make the upsampler text-conditioned with this frozen encoder: the base's ('minilm', 'mpnet' "
                   "or a local transformers folder); compose refuses one that differs from the base's. Default: no "
                   "text")
    u.add_argument("--max-length", type=positive_int, default=32,
                   help="with --text-encoder: prompt length in tokens (the base's)")
    u.add_argument("--pooled-text-heads", type=positive_int, default=8,
                   help="with --text-encoder: heads of the attention pooling (must divide the text width)")
    u.add_argument("--caption-dropout", type=fraction, default=0.1,
                   help="with --text-encoder: share of training samples given the empty prompt")
    add_train_flags(u, steps=800, batch_size=32, lr=2e-3, ema=0.999)
    u.add_argument("--held-out", type=non_negative_int, default=128, help="images kept out of training to measure PSNR")
    u.add_argument("--cache-dir", type=Path, default=None,
                   help="with --text-encoder: where caption embeddings are cached (default OUT/cache)")
    u.set_defaults(run=run_upsampler)


def run_upsampler(args, command: str) -> None:
    from t2i.cascade.model import UPSAMPLER_PRESETS
    from t2i.cascade.train import UpsamplerTrainConfig, train_upsampler

    model = UPSAMPLER_PRESETS[args.preset](args.low_size, args.size)
    model.prediction_type, model.min_snr_gamma = args.prediction, args.min_snr_gamma
    model.max_noise_level, model.sampling_noise_level = args.max_noise_level, args.noise_level
    text = None
    if args.text_encoder is not None:
        from t2i.text import TextEncoderConfig

        model.pooled_text_heads, model.caption_dropout = args.pooled_text_heads, args.caption_dropout
        text = TextEncoderConfig(source=args.text_encoder, max_length=args.max_length)
    cfg = UpsamplerTrainConfig(model=model, text=text, train=train_config(args), held_out=args.held_out)
    info = train_upsampler(args.data, args.out, cfg, cache_dir=args.cache_dir, command=command, resume=args.resume,
                           reset_data_position=args.reset_data_position, split=split_arg(args))
    if report_stop(info, command) or not is_main_process():
        return
    m = info["metrics"]
    psnr = (f"held-out PSNR {m['psnr_held_out']:.2f} dB (bicubic {m['psnr_bicubic_held_out']:.2f} dB), "
            if m["held_out_images"] else "")
    print(f"upsampler {args.low_size}→{args.size}: {psnr}wrote {args.out}")


def register_clip(tsub) -> None:
    c = tsub.add_parser("clip", formatter_class=Help, help="an in-domain CLIP for evaluation (FID features, CLIP score)",
                        description="Trains a small transformers CLIPModel contrastively on the dataset's image-caption "
                        "pairs (MiniLM's tokenizer) and saves a normal CLIPModel folder with tokenizer and "
                        "preprocessor files. t2i eval uses it with --clip DIR; its FIDs are comparable only with "
                        "FIDs from the same CLIP, never with published Inception FIDs.")
    c.add_argument("--data", required=True, type=Path, help="dataset folder")
    add_split_flag(c)
    c.add_argument("--out", required=True, type=Path, help="CLIP folder to write")
    c.add_argument("--preset", choices=["tiny", "small"], default="small", help="model size")
    c.add_argument("--size", type=positive_int, default=32, help="image side in pixels the CLIP sees")
    add_train_flags(c, steps=1000, batch_size=128, lr=1e-3, ema=0.0)
    c.set_defaults(run=run_clip)


def run_clip(args, command: str) -> None:
    from t2i.evaluation.clip import CLIP_PRESETS, ClipTrainConfig, train_clip

    cfg = ClipTrainConfig(model=CLIP_PRESETS[args.preset](args.size), train=train_config(args, weight_decay=0.1))
    info = train_clip(args.data, args.out, cfg, command=command, resume=args.resume,
                      reset_data_position=args.reset_data_position, split=split_arg(args))
    if report_stop(info, command) or not is_main_process():
        return
    m = info["metrics"]
    print(f"clip: held-out image-to-caption top-1 {100 * m['held_out_retrieval_top1']:.1f} % over "
          f"{m['held_out_pairs']} pairs, wrote {args.out}")


def register_shapes_classifier(tsub) -> None:
    s = tsub.add_parser("shapes-classifier", formatter_class=Help,
                        help="the reader behind compositional accuracy on shapes",
                        description="Renders fresh shapes images (seeds far from any dataset's) and trains a small CNN "
                        "that reads which colours are drawn and each one's shape, size and centre; reports its "
                        "accuracy on other fresh renders. t2i eval uses it with --classifier DIR.")
    s.add_argument("--out", required=True, type=Path, help="classifier folder to write")
    s.add_argument("--size", type=positive_int, default=32, help="image side in pixels (that of the pipeline to judge)")
    s.add_argument("--n-train", type=positive_int, default=10000, help="fresh renders to train on")
    add_train_flags(s, steps=1500, batch_size=128, lr=2e-3, ema=0.0)
    s.set_defaults(run=run_shapes_classifier)


def run_shapes_classifier(args, command: str) -> None:
    from t2i.evaluation.shapes_classifier import (ShapesClassifierConfig, ShapesClassifierTrainConfig,
                                                  train_shapes_classifier)

    cfg = ShapesClassifierTrainConfig(model=ShapesClassifierConfig(image_size=args.size), n_train=args.n_train,
                                      train=train_config(args))
    info = train_shapes_classifier(args.out, cfg, command=command, resume=args.resume,
                                   reset_data_position=args.reset_data_position)
    if report_stop(info, command) or not is_main_process():
        return
    acc = info["metrics"]["accuracy_on_fresh_renders"]
    print("shapes classifier on fresh renders: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in acc.items())
          + f"; wrote {args.out}")


def register_vq(tsub) -> None:
    v = tsub.add_parser("vq", formatter_class=Help, help="the tokens variant's decoder: a VQ autoencoder, images only",
                        description="Trains diffusers' VQModel (reconstruction + codebook + commitment loss; dead codes "
                        "re-initialised from the encoder's outputs), reports held-out PSNR and codebook usage, and "
                        "saves a component folder. With the small preset (3 levels, f = 4) 32 px images become 8×8 "
                        "token grids.")
    v.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    v.add_argument("--out", required=True, type=Path, help="component folder to write")
    v.add_argument("--preset", choices=["tiny", "small", "base"], default="small",
                   help="model size: tiny (2 levels, f=2, 64 codes), small (3 levels, f=4, 512 codes), "
                   "base (3 levels, wider, 1024 codes)")
    v.add_argument("--size", type=positive_int, default=32, help="training resolution in pixels")
    v.add_argument("--codebook-size", type=positive_int, default=None,
                   help="number of codes, the token generator's vocabulary (default: the preset's)")
    add_train_flags(v, steps=800, batch_size=16, lr=2e-3, ema=0.0)
    v.add_argument("--commitment", type=float, default=0.25, help="β, weight of the commitment loss")
    v.add_argument("--reinit-every", type=non_negative_int, default=50,
                   help="forward passes between dead-code checks: a code no encoder output chose in that window moves "
                   "onto a random encoder output of the batch (0: never, and no data-dependent start; needed with "
                   "several processes)")
    v.set_defaults(run=run_vq)


def run_vq(args, command: str) -> None:
    from t2i.tokens.vq import VQ_PRESETS
    from t2i.tokens.vq_train import VQTrainConfig, train_vq

    model = VQ_PRESETS[args.preset](args.size)
    if args.codebook_size is not None:
        model.codebook_size = args.codebook_size
    cfg = VQTrainConfig(model=model, train=train_config(args), commitment=args.commitment,
                        reinit_every=args.reinit_every)
    info = train_vq(args.data, args.out, cfg, command=command, resume=args.resume,
                    reset_data_position=args.reset_data_position)
    if report_stop(info, command) or not is_main_process():
        return
    m = info["metrics"]
    print(f"vq: held-out PSNR {m['psnr_held_out']:.2f} dB, {info['grid_size']}×{info['grid_size']} tokens of "
          f"{info['codebook_size']} codes; codes used {m['codebook_usage_train']['used_share']:.0%} (train), "
          f"perplexity {m['codebook_usage_train']['perplexity']:.0f}; wrote {args.out}")


def register_tokens(tsub) -> None:
    t = tsub.add_parser("tokens", formatter_class=Help, help="the tokens variant's generator: GPT-2 over VQ tokens",
                        description="Caches the VQ autoencoder's token grids and the text encoder's embeddings once, "
                        "then trains a GPT-2 (transformers GPT2LMHeadModel, small config) to write the grid in "
                        "raster order, cross-attending to the text, with caption dropout (for classifier-free "
                        "guidance) and EMA.")
    t.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    t.add_argument("--vq", required=True, type=Path, help="VQ autoencoder component folder (from t2i train vq)")
    t.add_argument("--out", required=True, type=Path, help="component folder to write")
    t.add_argument("--text-encoder", default="minilm",
                   help="'minilm' (pretrained, bundled), 'mpnet' (opt-in: make mpnet) or a local transformers "
                   "folder; frozen")
    t.add_argument("--max-length", type=positive_int, default=16, help="prompt length in tokens")
    t.add_argument("--preset", choices=["tiny", "small", "base"], default="small",
                   help="transformer size: tiny (width 64, 2 layers), small (128, 4), base (256, 8)")
    t.add_argument("--caption-dropout", type=fraction, default=0.1, help="share of empty-prompt training samples")
    add_train_flags(t, steps=1200, batch_size=64, lr=1e-3, ema=0.999)
    t.add_argument("--cache-dir", type=Path, default=None, help="where token grids/embeddings are cached (default OUT/cache)")
    t.add_argument("--cache-shard-rows", type=positive_int, default=4096,
                   help="samples per cache shard file; shards are what several processes split between them")
    t.add_argument("--pipeline-out", type=Path, default=None, help="also compose a ready pipeline folder here")
    t.set_defaults(run=run_tokens)


def run_tokens(args, command: str) -> None:
    from t2i.text import TextEncoderConfig
    from t2i.tokens.model import TOKEN_GENERATOR_PRESETS
    from t2i.tokens.train import TokensTrainConfig, train_tokens

    model = TOKEN_GENERATOR_PRESETS[args.preset]()
    model.caption_dropout = args.caption_dropout
    cfg = TokensTrainConfig(model=model, text=TextEncoderConfig(source=args.text_encoder, max_length=args.max_length),
                            train=train_config(args), cache_shard_rows=args.cache_shard_rows)
    info = train_tokens(args.data, args.vq, args.out, cfg, cache_dir=args.cache_dir, command=command,
                        resume=args.resume, reset_data_position=args.reset_data_position)
    if report_stop(info, command) or not is_main_process():
        return
    print(f"tokens: final loss {info['metrics']['final_loss']:.4f}, wrote {args.out}")
    if args.pipeline_out:
        from t2i.variants import compose_pipeline

        print(f"pipeline: wrote {compose_pipeline(args.out, args.pipeline_out)}")


def register_preview_decoder(tsub) -> None:
    p = tsub.add_parser("preview-decoder", formatter_class=Help,
                        help="the tiny decoder behind cheap per-step previews, for an existing autoencoder",
                        description="t2i train autoencoder already fits one. For an autoencoder trained before that "
                        "(or to refit): distils its decoder into a three-convolution network on latents of the data, "
                        "and writes FOLDER/preview_decoder/. Pipelines composed afterwards copy it; for a pipeline "
                        "folder, pass PIPELINE/vae and --data. Without one, previews use the real decoder.")
    p.add_argument("--autoencoder", required=True, type=Path, help="autoencoder component folder, or PIPELINE/vae")
    p.add_argument("--data", type=Path, default=None, help="images to distil on (default: the autoencoder's data)")
    p.add_argument("--epochs", type=positive_int, default=20, help="passes over the distillation set")
    p.set_defaults(run=run_preview_decoder)


def run_preview_decoder(args, command: str) -> None:
    from t2i.autoencoder.preview_decoder import PreviewFitConfig, add_preview_decoder

    decoder = add_preview_decoder(args.autoencoder, args.data, PreviewFitConfig(epochs=args.epochs))
    print(f"preview decoder: held-out RMS error {decoder.config.metrics['rms_error_held_out']:.3f} against the real "
          f"decoder (images in [-1, 1]); wrote {args.autoencoder / 'preview_decoder'}")

"""How well an autoencoder gives back its input: PSNR, SSIM (torchmetrics) and rFID, on held-out images.

rFID is FID between the held-out images and their reconstructions: the floor under any generator's FID
that decodes through this autoencoder (the Stable Diffusion autoencoders are compared by it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from t2i.data import load_tensors, scan_folder
from t2i.images import to_pil
from t2i.evaluation.features import FeatureExtractor
from t2i.evaluation.metrics import MIN_FID_SAMPLES, FeatureSet, fid


def reconstruction_metrics(originals: torch.Tensor, reconstructions: torch.Tensor, extractor: FeatureExtractor, *,
                           min_samples: int = MIN_FID_SAMPLES) -> dict:
    """PSNR (dB) and SSIM per image, averaged, and rFID, of (N, 3, H, W) images in [-1, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    a, b = (originals.clamp(-1, 1) + 1) / 2, (reconstructions.clamp(-1, 1) + 1) / 2  # [0, 1]
    psnr = peak_signal_noise_ratio(b, a, data_range=1.0, reduction="none", dim=(1, 2, 3))  # (N,)
    ssim = structural_similarity_index_measure(b, a, data_range=1.0, reduction="none")  # (N,)
    size = originals.shape[-1]
    real = FeatureSet(extractor([to_pil(x) for x in originals]), extractor.name, size, "held-out images")
    recon = FeatureSet(extractor([to_pil(x) for x in reconstructions]), extractor.name, size, "reconstructions")
    return {"psnr_db": float(psnr.mean()), "ssim": float(ssim.mean()), "rfid": fid(real, recon, min_samples=min_samples),
            "n": len(originals), "fid_extractor": extractor.name}


@torch.inference_mode()
def evaluate_autoencoder(autoencoder_dir: str | Path, data_dir: str | Path, extractor: FeatureExtractor, *,
                         n: int = 256, min_samples: int = MIN_FID_SAMPLES) -> dict:
    """Reconstruct the first n images of the data (the ones `t2i train autoencoder` holds out) through the
    KL autoencoder's posterior mode, and measure."""
    from diffusers import AutoencoderKL

    info_path = Path(autoencoder_dir) / "t2i_component.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    size = int(info.get("image_size") or 0) or None
    vae = AutoencoderKL.from_pretrained(autoencoder_dir).eval()
    size = size or int(vae.config.sample_size)
    records, _ = scan_folder(data_dir, verify=False)
    images = load_tensors(records[:n], size)
    recon = torch.cat([vae.decode(vae.encode(images[i : i + 64]).latent_dist.mode()).sample
                       for i in range(0, len(images), 64)])
    return reconstruction_metrics(images, recon, extractor, min_samples=min_samples)

"""Independent formulas the tests compare t2i's numbers against, written plainly with numpy and scipy."""

import numpy as np
import torch


def scipy_fid(x: np.ndarray, y: np.ndarray) -> float:
    """The formula of Heusel et al. (2017), written plainly with scipy's matrix square root."""
    from scipy import linalg

    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def numpy_clip_score(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """Hessel et al.'s CLIP score, 100·max(cos, 0) averaged over pairs, written plainly in numpy."""
    a, b = image_embeddings.double().numpy(), text_embeddings.double().numpy()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float((100 * np.maximum(cos, 0)).mean())

"""A torch Dataset over image–caption records, loading each image when it is asked for."""

from __future__ import annotations

import torch

from t2i.data.layout import Record
from t2i.images import load_image, to_tensor


class ImageCaptionDataset(torch.utils.data.Dataset):
    """Records as {"pixel_values": (3, S, S) float32 in [-1, 1], "caption": str, "index": int}.

    No augmentation: a horizontal flip would contradict captions such as "on the left".
    """

    def __init__(self, records: list[Record], size: int):
        """Serve `records` (e.g. from `scan_folder`) as size×size images."""
        self.records = list(records)
        self.size = size

    def __len__(self) -> int:
        """Number of records."""
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        """The index-th image (loaded now), its caption and its index."""
        record = self.records[index]
        pixels = to_tensor(load_image(record.path, self.size))  # (3, S, S)
        return {"pixel_values": pixels, "caption": record.caption, "index": index}

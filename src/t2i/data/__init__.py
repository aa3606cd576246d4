"""Data sources (procedural shapes, colour emoji, published emoji sets, folders of captioned images) and the layout
they share."""

from t2i.data.dataset import ImageCaptionDataset
from t2i.data.emoji import find_emoji_font, render_emoji, write_emoji
from t2i.data.emoji_sets import EMOJI_SETS, EmojiSetsConfig, write_emoji_sets
from t2i.data.layout import DataError, Record, ScanReport, dataset_fingerprint, load_tensors, scan_folder, write_layout
from t2i.data.shapes import BACKGROUND, COLOURS, SHAPES, SIZES, ShapesConfig, render_shapes, write_shapes

__all__ = [
    "BACKGROUND",
    "EMOJI_SETS",
    "COLOURS",
    "SHAPES",
    "SIZES",
    "DataError",
    "EmojiSetsConfig",
    "ImageCaptionDataset",
    "Record",
    "ScanReport",
    "ShapesConfig",
    "dataset_fingerprint",
    "find_emoji_font",
    "load_tensors",
    "render_emoji",
    "render_shapes",
    "scan_folder",
    "write_emoji",
    "write_emoji_sets",
    "write_layout",
    "write_shapes",
]

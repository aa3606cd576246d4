"""Experiments that check the recipe's claims on your data: `t2i experiment text-encoders` and `unet-sizes`.

Import the submodules (`text_encoders`, `unet_sizes`); this package stays light.
"""

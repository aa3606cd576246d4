"""The tokens variant (DALL-E's): a VQ autoencoder's token grid, written by an autoregressive transformer."""

"""Family Q, quantization and binarization. Shared helpers: common (quantizers, latent weights, packed signs)."""

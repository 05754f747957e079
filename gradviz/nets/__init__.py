"""Networks and their files: the paper's CNN, safetensors weights with JSON cards, training checkpoints."""

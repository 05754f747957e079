"""Training: the loop with checkpoints, the defenses' losses and the input-gradient penalties."""

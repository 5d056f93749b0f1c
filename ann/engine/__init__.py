"""Training: the loop (Trainer), checkpoints, optimizer and LR schedule."""

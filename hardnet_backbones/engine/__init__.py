"""Training engine shared by every task: config, distributed, checkpoints, the loop."""

"""Training, split by job: `loop` (the Trainer and its fit()), `step` (one optimiser update), `objective`
(loss, optimiser, learning-rate schedule), `checkpoints`, `validation` (with early stopping),
`reporting` (progress bar and TensorBoard), `distributed` (what ranks agree on) and `state`."""

"""Training, split by job: `setup` (the run folder: prepare, reuse or resume; DDP ranks wait for rank
0), `loop` (the Trainer and its fit()), `step` (one optimiser update), `objective` (loss, optimiser,
learning-rate schedule), `checkpoints`, `validation` (with early stopping), `reporting` (progress bar
and TensorBoard), `distributed` (the process group's start and stop, what ranks agree on) and `state`."""

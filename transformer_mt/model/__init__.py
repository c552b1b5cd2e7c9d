"""Model: the network and what it runs on.

`transformer` is the encoder–decoder with an incremental (KV-cached) decoder; `device` the device,
precision, autocast and attention-kernel choices; `checkpoint` checkpoint files (atomic writes, safe
loads, the format version) and the one loader of a trained run's checkpoint; `averaging` checkpoint
averaging.
"""

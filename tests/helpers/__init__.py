"""What several test modules share: tiny runs and corpora (`runs`), tiny models and batches
(`models`), the checks every export format must pass (`exports`), and `without_torch.py`, which runs a
script with PyTorch unimportable."""

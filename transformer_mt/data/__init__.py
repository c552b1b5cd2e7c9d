"""Data: a corpus, from its files to the batches a model trains on.

`corpus` reads pairs (hub dataset, JSONL / TSV / aligned files, the embedded sample in `sample/`),
cleans them and names bad lines; `splitting` holds out valid/test by a seeded hash of each source;
`tokenizer` is the byte-level BPE with fixed special ids; `store` the memory-mapped encoded corpus;
`preparation` turns a corpus of any size into splits, tokenizers and a store in bounded memory;
`batching` cuts length-bucketed token-capped batches from the store.
"""

"""Decoding: sentences in, n-best translations out, from a run's PyTorch model or a CTranslate2 export.

`translator` is what every translator does (tokenise, length-sorted batches, n-best; torch-free);
`pytorch` a run's model as one, `ctranslate2` an export as one (never loading PyTorch), reading the
folder through `ctranslate2_folder`; `search` greedy and batched beam search, `search_rules` the rules
both decoders share (length penalty, length limit; torch-free); `scores` corpus BLEU / chrF;
`heatmaps` cross-attention figures.
"""

"""A trained run as a model other software runs, exactly (the same translations, tested):

- ctranslate2.py: a CTranslate2 model folder (fp32 or quantized), decoded by exported.py;
- transformers.py: a Hugging Face `transformers` folder (MarianMT or Pegasus classes, a fast tokenizer,
  generation settings, a model card) for the Hub, loadable with `transformers` alone;
- common.py: what both share: the checkpoint they read, the folder built aside and renamed into place.
"""

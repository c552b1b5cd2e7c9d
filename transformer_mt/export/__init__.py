"""A trained run as a model other software runs, exactly (the same translations, tested):

- ctranslate2.py: a CTranslate2 model folder (fp32 or quantized), decoded by decoding/ctranslate2.py;
- transformers.py: a Hugging Face `transformers` folder (MarianMT or Pegasus classes, a fast tokenizer,
  generation settings, a model card) for the Hub, loadable with `transformers` alone;
- model_card.py: the transformers export's model card, with the test-split scores;
- common.py: what both share: the folder built aside and renamed into place (model/checkpoint.py's
  Trained is the checkpoint they read).
"""

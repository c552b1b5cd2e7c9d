"""A trained run as a model other software runs, exactly (the same translations, tested):

- ctranslate2.py: a CTranslate2 model folder (fp32 or quantized), decoded by exported.py;
- common.py: what every format shares: the checkpoint it reads, the folder built aside and renamed into place.
"""

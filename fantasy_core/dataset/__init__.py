"""From talking videos to a cached training set: clip planning and decoding (``video``), the filters (``checks``),
the latent lip mask (``lip_mask``), the per-clip analysis run in worker processes (``analyse``), the dataset folder
with its manifest and shards (``store``) and its summary (``summary``). No ComfyUI here: the encoders that need it
live in ``fantasy_train``."""

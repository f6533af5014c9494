"""Training-side tools that run inside ComfyUI's Python with ComfyUI's own model loaders: ``prepare`` turns a folder
of talking videos into a cached training set. Run as ``python -m fantasy_train`` from the pack folder (see README)."""

"""DAVA training (paper Sec. 3.2) in pure PyTorch: the objective, per-row randomness, the run configuration and the
trainable modules. The Wan forward and the accelerate loop live in ``fantasy_train`` (ComfyUI side)."""

"""What every modality shares inside Wan's DiT: the injection layer, its attention and its casting layers."""

"""The identity modality: finding the reference face, aligning it, and its ArcFace embedding."""

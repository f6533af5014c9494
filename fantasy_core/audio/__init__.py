"""The audio modality: voice track preparation, wav2vec2 chunking, official windows, the adapter and its files."""

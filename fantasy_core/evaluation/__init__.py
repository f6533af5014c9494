"""The paper's evaluation metrics as arithmetic on features (pure PyTorch): the Fréchet distance of FID and FVD over
streamed feature statistics, SyncNet's Sync-C / Sync-D protocol for generated clips, identity consistency (IDC),
subject and background dynamics (SD / BD) and the LAION aesthetic score. The networks that make the features are
loaded elsewhere; the definitions, and where each follows a public reference, are in docs/evaluation.md."""

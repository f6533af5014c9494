"""Headless generation through ComfyUI's HTTP API (no torch, no ComfyUI imports)."""

"""The ComfyUI-side machinery of FantasyTalking, used by the node files and the trainer alike; it imports ComfyUI and
``fantasy_core``, never ``nodes/``:

- ``host``: finding ComfyUI and importing it outside its server (standard library only until called);
- ``model_folders``: the models folders the pack reads and the file choices the loaders offer;
- ``loaded_modules``: the audio, identity and motion modules of a FantasyTalking file as ComfyUI ModelPatchers;
- ``patch``: FantasyTalking on a Wan MODEL (the object patches and the run's wrappers); ``pass_settings``: what each
  conditioning's passes hear, see and how much they move;
- ``guider``: the three-pass guidance; ``sampler``: the official shift, schedule and sampling;
- ``audio``, ``faces``, ``motion``: the Audio Embeds, Face Crop / Face Embedding and Measure Motion work;
- ``wav2vec``: wav2vec2 in ComfyUI's audio encoder; ``i2v``: the image-to-video reference conditioning;
- ``long_video``: minutes of speech as overlapping segments streamed to an MP4.
"""

"""Peak memory of FantasyTalkingLongVideo does not grow with the number of segments.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_long_video.py

Runs the node twice, each in a fresh process (peak RSS is per process): 2 segments (149 frames) and 4 segments
(285 frames) of 81 frames with 13 overlapping, at 256x256 (BENCH_SIZE), with a random-weight Wan2.1 I2V (2 blocks,
dim 256), a random 8-channel Wan VAE and random audio features; 1 step at cfg 1 per segment (sampling cost is not
the point). Decoded frames stream to the MP4, so the 4-segment run should peak within 10% of the 2-segment run. It
also prints the growth above the memory held once the models are loaded, where keeping every frame instead would
show: 136 more frames (about 107 MB at 256x256 in float32).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = int(os.environ.get("BENCH_SIZE", "256"))


def random_vae(path: str) -> None:
    from comfy.ldm.wan.vae import WanVAE
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vae = WanVAE(
        dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0
    )
    state = {
        k: (1 + 0.1 * torch.randn(v.shape))
        if k.endswith("gamma")
        else (0.01 * torch.randn(v.shape) if v.dim() < 2 else torch.randn(v.shape) / math.sqrt(v[0].numel()))
        for k, v in vae.state_dict().items()
    }
    save_file(state, path)


def one_run(segments: int) -> dict:
    """In this process: generate `segments` segments and report the peak RSS."""
    sys.path.insert(0, HERE)
    from bench_comfyui import audio_embeds
    from comfyui_host import load_comfyui_with_pack

    node_classes = load_comfyui_with_pack()
    import comfy.clip_vision
    import comfy.ops
    import comfy.sd
    import comfy.utils
    import folder_paths
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file

    folder = tempfile.mkdtemp()
    torch.manual_seed(0)
    wan = WanModel(
        model_type="i2v",
        in_dim=36,
        out_dim=16,
        text_dim=4096,
        dim=256,
        ffn_dim=512,
        num_heads=2,
        num_layers=2,
        operations=comfy.ops.disable_weight_init,
    )
    save_file({k: 0.05 * torch.randn(v.shape) for k, v in wan.state_dict().items()}, os.path.join(folder, "wan.safetensors"))
    adapter = {
        "proj_model.proj.weight": 0.05 * torch.randn(2048, 768),
        "proj_model.norm.weight": torch.ones(2048),
        "proj_model.norm.bias": torch.zeros(2048),
    }
    for i in range(2):
        adapter[f"blocks.{i}.cross_attn.k_proj.weight"] = 0.02 * torch.randn(256, 2048)
        adapter[f"blocks.{i}.cross_attn.v_proj.weight"] = 0.02 * torch.randn(256, 2048)
    save_file(adapter, os.path.join(folder, "adapter.safetensors"))
    random_vae(os.path.join(folder, "vae.safetensors"))
    folder_paths.add_model_folder_path("fantasytalking", folder)
    frames = 81 + (segments - 1) * 68
    model = comfy.sd.load_diffusion_model(os.path.join(folder, "wan.safetensors"))
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(os.path.join(folder, "vae.safetensors")))
    (patcher,) = node_classes["FantasyTalkingModelLoader"].execute(model_name="adapter.safetensors", weight_dtype="default").result
    clip = comfy.clip_vision.Output()
    clip.penultimate_hidden_states = torch.randn(1, 257, 1280) * 0.5
    text = [[torch.randn(1, 512, 4096) * 0.5, {}]]
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ComfyUI, torch and the models
    seconds = frames / 23
    audio = {"waveform": torch.zeros(1, 1, int(seconds * 16000)), "sample_rate": 16000}
    start = time.perf_counter()
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        (video,) = (
            node_classes["FantasyTalkingLongVideo"]
            .execute(
                model=model,
                fantasytalking_model=patcher,
                audio_embeds=audio_embeds(frames),
                audio_scale=1.0,
                positive=text,
                negative=text,
                vae=vae,
                clip_vision_output=clip,
                start_image=torch.rand(1, SIZE, SIZE, 3),
                width=SIZE,
                height=SIZE,
                segment_frames=81,
                overlap_frames=13,
                seed=0,
                steps=1,
                cfg=1.0,
                audio_cfg=2.0,
                sampler_name="euler",
                scheduler="fantasytalking",
                shift=5.0,
                color_match=1.0,
                audio=audio,
            )
            .result
        )
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"segments": segments, "frames": frames, "peak_mb": peak_mb, "growth_mb": peak_mb - baseline_mb, "seconds": elapsed}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(one_run(int(sys.argv[2]))))
        return
    results = []
    for segments in (2, 4):
        print(f"running {segments} segments in a fresh process ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", str(segments)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print(
            f"{r['segments']} segments, {r['frames']} frames at {SIZE}x{SIZE}: peak RSS {r['peak_mb']:.0f} MB "
            f"({r['growth_mb']:.0f} MB above the loaded models), {r['seconds']:.1f} s"
        )
    ratio = results[1]["peak_mb"] / results[0]["peak_mb"]
    growth = results[1]["growth_mb"] / results[0]["growth_mb"]
    print(
        f"peak memory 4 segments / 2 segments: {ratio:.3f} ({'within' if ratio <= 1.10 else 'OVER'} the 10% bound); "
        f"growth above the loaded models: {growth:.3f}"
    )


if __name__ == "__main__":
    main()

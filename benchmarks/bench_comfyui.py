"""Per-step cost of FantasyTalking inside ComfyUI: patched vs unpatched native Wan2.1 I2V, side by side.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_comfyui.py [--steps 4] [--repeats 5]

A random-weight Wan2.1 I2V (4 blocks, dim 512, 4 heads) is saved as safetensors and loaded by ComfyUI's own loader;
the pack is loaded by ComfyUI's custom-node loader and applied with its nodes. 4 latent frames of 32x32 give
1024 video tokens; 512 text tokens, 257 image tokens, 17-token audio windows. Each run samples --steps Euler steps
at cfg 1 (one model evaluation per step); the table gives the median time per step and the ratio, next to the FLOP
model's ratio for the same shapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(PACK_DIR)  # for fantasy_core; appended so ComfyUI's own `nodes` module keeps priority
sys.path.append(os.path.join(PACK_DIR, "scripts"))
DIM, HEADS, FFN, BLOCKS = 512, 4, 2048, 4
LATENT_FRAMES, LATENT_HW = 4, 32  # (32 / 2)^2 * 4 = 1024 video tokens


def random_files(folder: str) -> tuple[str, str]:
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file

    torch.manual_seed(0)
    wan = WanModel(
        model_type="i2v",
        in_dim=36,
        out_dim=16,
        text_dim=4096,
        dim=DIM,
        ffn_dim=FFN,
        num_heads=HEADS,
        num_layers=BLOCKS,
        operations=comfy.ops.disable_weight_init,
    )
    state = {
        k: (1 + 0.1 * torch.randn(v.shape)) if k.endswith("weight") and v.dim() == 1 else 0.05 * torch.randn(v.shape)
        for k, v in wan.state_dict().items()
    }
    wan_path = os.path.join(folder, "wan_bench.safetensors")
    save_file(state, wan_path)
    adapter = {
        "proj_model.proj.weight": 0.05 * torch.randn(2048, 768),
        "proj_model.norm.weight": torch.ones(2048),
        "proj_model.norm.bias": torch.zeros(2048),
    }
    for i in range(BLOCKS):
        adapter[f"blocks.{i}.cross_attn.k_proj.weight"] = 0.02 * torch.randn(DIM, 2048)
        adapter[f"blocks.{i}.cross_attn.v_proj.weight"] = 0.02 * torch.randn(DIM, 2048)
    adapter_path = os.path.join(folder, "fantasytalking_bench.safetensors")
    save_file(adapter, adapter_path)
    return wan_path, adapter_path


def audio_embeds(frames: int):
    from fantasy_core import AudioEmbeds, PreparedAudio

    tokens = (int(frames / 23 * 16000) - 400) // 320 + 1
    prepared = PreparedAudio(torch.zeros(int(frames / 23 * 16000)), frames, 23)
    return AudioEmbeds.from_features(torch.randn(tokens, 768), prepared)


def conditioning():
    import comfy.clip_vision

    clip = comfy.clip_vision.Output()
    clip.penultimate_hidden_states = torch.randn(1, 257, 1280) * 0.5
    shape = (1, 16, LATENT_FRAMES, LATENT_HW, LATENT_HW)
    return [
        [
            torch.randn(1, 512, 4096) * 0.5,
            {"clip_vision_output": clip, "concat_latent_image": torch.randn(shape) * 0.5, "concat_mask": torch.zeros(1, 1, *shape[2:])},
        ]
    ]


def seconds_per_step(model, positive, steps: int) -> float:
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(1, 16, LATENT_FRAMES, LATENT_HW, LATENT_HW)
    start = time.perf_counter()
    comfy.sample.sample_custom(
        model,
        comfy.sample.prepare_noise(latent, 0),
        1.0,
        comfy.samplers.sampler_object("euler"),
        torch.linspace(1, 0, steps + 1),
        positive,
        positive,
        latent,
        disable_pbar=True,
        seed=0,
    )
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    comfyui_path = os.environ.get("COMFYUI_PATH") or os.path.expanduser("~/comfy/ComfyUI")
    from comfyui_host import load_comfyui_with_pack

    node_classes = load_comfyui_with_pack(comfyui_path)
    import comfy.sd
    from bench_core import BlockShape, block_flops

    with tempfile.TemporaryDirectory() as folder:
        wan_path, adapter_path = random_files(folder)
        wan = comfy.sd.load_diffusion_model(wan_path)
        import folder_paths

        folder_paths.add_model_folder_path("fantasytalking", folder)
        (adapter,) = (
            node_classes["FantasyTalkingModelLoader"].execute(model_name=os.path.basename(adapter_path), weight_dtype="default").result
        )
    frames = 4 * (LATENT_FRAMES - 1) + 1
    positive = conditioning()
    patched, heard, _ = (
        node_classes["FantasyTalkingApply"]
        .execute(
            model=wan,
            fantasytalking_model=adapter,
            audio_embeds=audio_embeds(frames),
            audio_scale=1.0,
            positive=positive,
            negative=positive,
        )
        .result
    )
    runs = {"unpatched": [], "patched": []}
    with torch.inference_mode():
        for model, cond in ((wan, positive), (patched, heard)):  # warm-up
            seconds_per_step(model, cond, 1)
        for repeat in range(args.repeats):
            print(f"\rrun {repeat + 1}/{args.repeats}", end="", flush=True)
            runs["unpatched"].append(seconds_per_step(wan, positive, args.steps))
            runs["patched"].append(seconds_per_step(patched, heard, args.steps))
    print()
    unpatched, with_audio = statistics.median(runs["unpatched"]), statistics.median(runs["patched"])
    shape = BlockShape(dim=DIM, ffn_dim=FFN, heads=HEADS, latent_frames=LATENT_FRAMES, tokens_per_frame=(LATENT_HW // 2) ** 2)
    block_f, audio_f = block_flops(shape)
    print(
        f"ComfyUI Wan2.1 I2V, {BLOCKS} blocks, dim {DIM}, {shape.video_tokens} video tokens, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats} runs x {args.steps} steps"
    )
    print(f"per step: unpatched {unpatched * 1e3:.1f} ms, patched {with_audio * 1e3:.1f} ms")
    print(f"patched / unpatched: measured {with_audio / unpatched:.3f}, FLOP model {(block_f + audio_f) / block_f:.3f} (blocks only)")


if __name__ == "__main__":
    main()

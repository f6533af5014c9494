"""Test workflows in ComfyUI's API format: portrait + voice -> MP4 with sound, through both sampling paths."""

WAN = "wan2.1_i2v_tiny.safetensors"
VAE = "wan_2.1_vae_tiny.safetensors"
ADAPTER = "fantasytalking_tiny.ckpt"
WAV2VEC = "wav2vec2-tiny-960h"


def talking_portrait(image: str, audio: str, prefix: str, steps: int = 2, max_frames: int = 9) -> dict:
    def node(class_type, **inputs):
        return {"class_type": class_type, "inputs": inputs}

    return {
        "1": node("UNETLoader", unet_name=WAN, weight_dtype="default"),
        "2": node("VAELoader", vae_name=VAE),
        "3": node("LoadImage", image=image),
        "4": node("LoadAudio", audio=audio),
        "5": node("FantasyTalkingTestConditioning", seed=1),
        "6": node("FantasyTalkingTestConditioning", seed=2),
        "7": node("FantasyTalkingTestClipVisionOutput", seed=3),
        "8": node("FantasyTalkingWav2VecLoader", model_name=WAV2VEC),
        "9": node("FantasyTalkingAudioEmbeds", audio=["4", 0], audio_encoder=["8", 0], fps=23, max_frames=max_frames),
        "10": node(
            "WanImageToVideo",
            positive=["5", 0],
            negative=["6", 0],
            vae=["2", 0],
            width=64,
            height=64,
            length=["9", 1],
            batch_size=1,
            clip_vision_output=["7", 0],
            start_image=["3", 0],
        ),
        "11": node("FantasyTalkingModelLoader", model_name=ADAPTER, weight_dtype="default"),
        "12": node(
            "FantasyTalkingApply",
            model=["1", 0],
            fantasytalking_model=["11", 0],
            audio_embeds=["9", 0],
            audio_scale=1.0,
            positive=["10", 0],
            negative=["10", 1],
        ),
        "13": node(
            "FantasyTalkingCFGGuider",
            model=["12", 0],
            positive=["12", 1],
            negative=["12", 2],
            cfg=5.0,
            audio_cfg=4.5,
            audio_cfg_start=0.0,
            audio_cfg_end=1.0,
        ),
        "14": node("RandomNoise", noise_seed=0),
        "15": node("KSamplerSelect", sampler_name="euler"),
        "16": node("BasicScheduler", model=["12", 0], scheduler="simple", steps=steps, denoise=1.0),
        "17": node("SamplerCustomAdvanced", noise=["14", 0], guider=["13", 0], sampler=["15", 0], sigmas=["16", 0], latent_image=["10", 2]),
        "18": node(
            "FantasyTalkingSampler",
            model=["12", 0],
            positive=["12", 1],
            negative=["12", 2],
            latent_image=["10", 2],
            seed=0,
            steps=steps,
            cfg=5.0,
            audio_cfg=4.5,
            sampler_name="euler",
            scheduler="fantasytalking",
            denoise=1.0,
            shift=5.0,
        ),
        "19": node("VAEDecode", samples=["17", 0], vae=["2", 0]),
        "20": node("CreateVideo", images=["19", 0], fps=["9", 2], audio=["9", 3]),
        "21": node("SaveVideo", video=["20", 0], filename_prefix=f"{prefix}_guider", format="mp4", codec="h264"),
        "22": node("VAEDecode", samples=["18", 0], vae=["2", 0]),
        "23": node("CreateVideo", images=["22", 0], fps=["9", 2], audio=["9", 3]),
        "24": node("SaveVideo", video=["23", 0], filename_prefix=f"{prefix}_sampler", format="mp4", codec="h264"),
        "25": node("SaveLatent", samples=["17", 0], filename_prefix=f"latents/{prefix}"),
    }


def mp4_streams(path: str) -> dict:
    """Frame count, duration and stream kinds of a saved video, read back with PyAV."""
    import av

    with av.open(path) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        kinds = sorted(stream.type for stream in container.streams)
        fps = float(video.average_rate)
        audio_duration = None
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio_duration = float(audio.duration * audio.time_base) if audio.duration else None
    return {"frames": frames, "kinds": kinds, "fps": fps, "audio_duration": audio_duration}

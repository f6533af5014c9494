"""ComfyUI tier fixtures: the real ComfyUI, in-process, with this pack loaded by ComfyUI's own loader, and a
models folder of tiny random-weight files in the real formats."""

from __future__ import annotations

import asyncio
import os

import pytest
from tiers import PACK_DIR
from tiny_models import (
    TINY_WAN,
    in_layout,
    random_adapter_state,
    save_ctc_wav2vec_folder,
    save_tiny_wan_i2v,
    write_checkpoint,
)

from fantasy_core import AdapterConfig

PACK_NAME = "fantasytalking-native"
ADAPTER_768 = AdapterConfig(audio_dim=768, context_dim=24, model_dim=TINY_WAN["dim"], num_blocks=TINY_WAN["num_layers"])


@pytest.fixture(scope="session")
def comfy_nodes(comfy, tmp_path_factory):
    """ComfyUI's node registry with core extras and this pack loaded (as ComfyUI loads custom nodes)."""
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    os.symlink(PACK_DIR, custom_nodes / PACK_NAME)
    assert asyncio.run(nodes.load_custom_node(str(custom_nodes / PACK_NAME), module_parent="custom_nodes"))
    return nodes.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="session")
def model_files(comfy, comfy_nodes, tmp_path_factory):
    """models/{diffusion_models,fantasytalking,audio_encoders} with tiny files, registered with folder_paths."""
    import folder_paths

    root = tmp_path_factory.mktemp("models")
    for name in ("diffusion_models", "fantasytalking", "audio_encoders", "vae"):
        (root / name).mkdir()
        folder_paths.add_model_folder_path(name, str(root / name))
    files = {
        "wan": save_tiny_wan_i2v(comfy, str(root / "diffusion_models" / "wan2.1_i2v_tiny.safetensors")),
        "adapter_state": random_adapter_state(ADAPTER_768, seed=1),
        "wav2vec": save_ctc_wav2vec_folder(str(root / "audio_encoders" / "wav2vec2-tiny-960h")),
        "root": root,
    }
    files["adapter"] = write_checkpoint(str(root / "fantasytalking" / "fantasytalking_tiny.ckpt"), in_layout(files["adapter_state"], "nested"))
    return files

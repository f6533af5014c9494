"""DAVA training in pure PyTorch: the flow-matching objective and the lip-focused loss against written-out
re-statements, the per-sample draws (rates, independence from how a batch is split), the data order, the run
configuration's errors, clip-level audio attention, and per-row contexts through the injection layer."""

import math

import pytest
import torch
from naive_reference import naive_attention
from test_injection import IMG, setup, tapped

from fantasy_core import AudioAdapter, AudioAdapterConfig
from fantasy_core.audio.adapter import AudioContext, initialise_audio_adapter
from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit.injection import branch_terms
from fantasy_core.module_file import load_fantasytalking_file
from fantasy_core.training.config import ConfigError, config_from_dict, load_config
from fantasy_core.training.draws import DropoutRates, batch_samples, draw
from fantasy_core.training.objective import (
    noisy_latents,
    row_losses,
    shifted_sigma,
    velocity_target,
)

MINIMAL = {"output_dir": "out", "data": {"dataset": "data"}}


def test_flow_matching_quantities_follow_their_formulas():
    u = torch.tensor([0.0, 0.25, 0.5, 1.0])
    expected = [5 * x / (1 + 4 * x) for x in u.tolist()]
    assert shifted_sigma(u, 5.0).tolist() == pytest.approx(expected)
    assert shifted_sigma(u, 1.0).tolist() == pytest.approx(u.tolist())
    x0, noise = torch.randn(2, 3, 2, 2, 2), torch.randn(2, 3, 2, 2, 2)
    sigma = torch.tensor([0.2, 0.9])
    x_t = noisy_latents(x0, noise, sigma)
    for row in range(2):
        torch.testing.assert_close(x_t[row], (1 - sigma[row]) * x0[row] + sigma[row] * noise[row])
    torch.testing.assert_close(velocity_target(x0, noise), noise - x0)


def naive_row_loss(prediction, target, mask, use, reduction):
    """Σ over elements written out per row."""
    channels, frames, height, width = prediction.shape[1:]
    out = []
    for b in range(prediction.shape[0]):
        total = weighted = weight = 0.0
        for c in range(channels):
            for t in range(frames):
                for y in range(height):
                    for x in range(width):
                        error = float(prediction[b, c, t, y, x] - target[b, c, t, y, x]) ** 2
                        total += error
                        weighted += float(mask[b, t, y, x]) * error
                        weight += float(mask[b, t, y, x])
        count = channels * frames * height * width
        if use[b] and weight > 0:
            out.append(weighted / weight if reduction == "masked_mean" else weighted / count)
        else:
            out.append(total / count)
    return out


@pytest.mark.parametrize("reduction", ["masked_mean", "mean"])
def test_lip_focused_loss_equals_an_independent_computation(reduction):
    gen = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(3, 2, 2, 3, 3, generator=gen), torch.randn(3, 2, 2, 3, 3, generator=gen)
    mask = (torch.rand(3, 2, 3, 3, generator=gen) > 0.6).float() * torch.rand(3, 2, 3, 3, generator=gen)
    mask[2] = 0  # an empty mask falls back to the plain loss
    use = torch.tensor([True, False, True])
    losses, used = row_losses(prediction, target, mask, use, reduction)
    assert losses.tolist() == pytest.approx(naive_row_loss(prediction, target, mask, use, reduction), rel=1e-5)
    assert used.tolist() == [True, False, False]
    plain, never = row_losses(prediction, target, None, use, reduction)
    assert plain.tolist() == pytest.approx(naive_row_loss(prediction, target, mask, [False] * 3, reduction), rel=1e-5)
    assert not never.any()


def test_lip_loss_focuses_the_gradient_on_the_lips():
    prediction = torch.zeros(1, 2, 1, 2, 2, requires_grad=True)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    row_losses(prediction, torch.ones(1, 2, 1, 2, 2), mask, torch.tensor([True]))[0].sum().backward()
    assert (prediction.grad[0, :, 0, 0, 0] != 0).all() and (prediction.grad[0, :, 0].flatten(1)[:, 1:] == 0).all()


def test_dropout_and_lip_loss_rates_over_many_samples():
    rates = DropoutRates(reference=0.1, audio=0.1, prompt=0.1)
    n = 4000
    draws = draw(7, 3, list(range(n)), (1, 1, 1, 1), 5.0, rates, eta=0.2)
    bound = 4 * math.sqrt(0.1 * 0.9 / n)  # four standard errors of a binomial proportion
    for flags in (draws.drop_reference, draws.drop_audio, draws.drop_prompt):
        assert abs(flags.float().mean().item() - 0.1) < bound
    assert abs(draws.lip_loss.float().mean().item() - 0.8) < 4 * math.sqrt(0.2 * 0.8 / n)
    # independent of each other: both dropped about 1% of the time
    both = (draws.drop_audio & draws.drop_prompt).float().mean().item()
    assert abs(both - 0.01) < 4 * math.sqrt(0.01 * 0.99 / n)
    # σ is the shifted uniform: P(σ <= shifted(0.5)) = 0.5
    assert abs((draws.sigma <= shifted_sigma(torch.tensor(0.5), 5.0)).float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
    none = draw(7, 3, list(range(200)), (1,), 5.0, DropoutRates(0.0, 0.0, 0.0), eta=1.0)
    assert not (none.drop_reference | none.drop_audio | none.drop_prompt | none.lip_loss).any()


def test_a_samples_draws_do_not_depend_on_the_batch_it_is_in():
    whole = draw(1, 5, [0, 1, 2, 3], (2, 3), 3.0, DropoutRates(), 0.2)
    halves = [draw(1, 5, [0, 1], (2, 3), 3.0, DropoutRates(), 0.2), draw(1, 5, [2, 3], (2, 3), 3.0, DropoutRates(), 0.2)]
    assert torch.equal(whole.noise, torch.cat([h.noise for h in halves]))
    assert torch.equal(whole.sigma, torch.cat([h.sigma for h in halves]))
    assert torch.equal(whole.drop_audio, torch.cat([h.drop_audio for h in halves]))
    assert not torch.equal(draw(1, 6, [0], (2, 3), 3.0, DropoutRates(), 0.2).noise, whole.noise[:1])  # another step differs


def test_data_order_visits_every_clip_once_per_epoch():
    stream = [i for step in range(6) for i in batch_samples(3, step, 5, 2)]  # 12 positions over 5 clips
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert stream[:5] != stream[5:10]  # a fresh order each epoch
    assert batch_samples(3, 4, 5, 2) == stream[8:10]  # a step's samples depend only on (seed, step)


def test_config_errors_name_the_key():
    config = config_from_dict({**MINIMAL, "stage": 2, "objective": {"dropout": {"audio": 0.2}}})
    assert (config.stage, config.objective.dropout.audio, config.objective.eta, config.optimizer.learning_rate) == (2, 0.2, 0.2, 1e-4)
    with pytest.raises(ConfigError, match=r"data\.fpz does not exist in \[data\]; the keys there are \['batch_size'"):
        config_from_dict({**MINIMAL, "data": {"dataset": "d", "fpz": 3}})
    with pytest.raises(ConfigError, match="learning_rat does not exist at the top level"):
        config_from_dict({**MINIMAL, "learning_rat": 1})
    with pytest.raises(ConfigError, match="'stage' must be 1 or 2, got 3"):
        config_from_dict({**MINIMAL, "stage": 3})
    with pytest.raises(ConfigError, match=r"dropout\.prompt must lie between 0 and 1"):
        config_from_dict({**MINIMAL, "objective": {"dropout": {"prompt": 1.5}}})
    with pytest.raises(ConfigError, match="'optimizer.learning_rate' must be a number, got 'fast'"):
        config_from_dict({**MINIMAL, "optimizer": {"learning_rate": "fast"}})
    with pytest.raises(ConfigError, match="'model.gradient_checkpointing' must be true or false, got 'yes'"):
        config_from_dict({**MINIMAL, "model": {"gradient_checkpointing": "yes"}})
    with pytest.raises(ConfigError, match="'data.dataset' must be the folder"):
        config_from_dict({"output_dir": "o"})


def test_validation_and_sharding_settings_out_of_range_are_refused():
    renders = {"every": 10, "image": "portrait.png", "audio": "speech.wav"}
    assert config_from_dict({**MINIMAL, "validation": renders}).validation.steps == 30
    for key, value, expected in (
        ("steps", 0, "at least 1"),
        ("shift", 0.0, "positive"),
        ("omega_lip", 1.5, "between 0 and 1"),
        ("omega_body", -0.1, "between 0 and 1"),
        ("every", -1, r"0 \(no renders\) or more"),
    ):
        with pytest.raises(ConfigError, match=f"'validation.{key}' must be {expected}, got {value!r}"):
            config_from_dict({**MINIMAL, "validation": {**renders, key: value}})
    with pytest.raises(ConfigError, match="'validation.audio' must be a voice file to render"):
        config_from_dict({**MINIMAL, "validation": {"every": 10, "image": "portrait.png"}})
    assert config_from_dict({**MINIMAL, "model": {"shard_base": True, "base_dtype": "bf16"}}).model.shard_base
    with pytest.raises(ConfigError, match=r"'model.base_gpu_memory_gb' must be 0 with model.shard_base = true \(ComfyUI's low-VRAM"):
        config_from_dict({**MINIMAL, "model": {"shard_base": True, "base_gpu_memory_gb": 20.0}})
    with pytest.raises(ConfigError, match="'model.base_dtype' must be bf16, fp16 or fp32 with model.shard_base = true.*got 'fp8_e4m3fn'"):
        config_from_dict({**MINIMAL, "model": {"shard_base": True, "base_dtype": "fp8_e4m3fn"}})


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('output_dir = "o"\nsteps = 10\n[data]\ndataset = "d"\n[optimizer]\nlearning_rate = 1e-4\n')
    config = load_config(str(path), ["optimizer.learning_rate=5e-5", "modules.identity=false", "stage=2"])
    assert (config.optimizer.learning_rate, config.modules.identity, config.stage, config.steps) == (5e-5, False, 2, 10)
    with pytest.raises(ConfigError, match="not valid TOML"):
        path.write_text("steps = = 3")
        load_config(str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))


def test_shipped_configs_load():
    import glob
    import os

    found = glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "fantasy_train", "configs", "*.toml"))
    assert len(found) >= 2
    stages = {load_config(path).stage for path in found}
    assert stages == {1, 2}


def test_shipped_fsdp_config_reaches_accelerates_fsdp2_plugin(tmp_path):
    """Through accelerate's own launcher (one process here): FSDP2 with the Wan blocks as the wrap unit, in bf16."""
    import os
    import subprocess
    import sys

    pytest.importorskip("accelerate")
    config = os.path.join(os.path.dirname(__file__), "..", "..", "fantasy_train", "configs", "accelerate", "fsdp_8gpu.yaml")
    script = tmp_path / "show_plugin.py"
    script.write_text(
        "import os\nfrom accelerate.utils import FullyShardedDataParallelPlugin\n"
        "plugin = FullyShardedDataParallelPlugin()\n"
        "print(plugin.fsdp_version, plugin.transformer_cls_names_to_wrap, plugin.reshard_after_forward, "
        "plugin.activation_checkpointing, os.environ['ACCELERATE_MIXED_PRECISION'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "1", str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2 ['WanAttentionBlock'] True False bf16"


def test_the_runs_settings_reach_deepspeed_and_engine_mismatches_are_refused():
    from types import SimpleNamespace

    from fantasy_train.engines import (
        EngineError,
        apply_deepspeed_settings,
        configure_engine,
    )

    accelerate = pytest.importorskip("accelerate")
    config = config_from_dict(
        {**MINIMAL, "data": {"dataset": "d", "batch_size": 3}, "optimizer": {"gradient_accumulation": 4, "max_grad_norm": 0.5}}
    )
    generated = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 3},
    }
    assert apply_deepspeed_settings(generated, config) is generated  # in place: accelerate reads this very dict
    assert generated == {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": 3,
        "gradient_accumulation_steps": 4,
        "gradient_clipping": 0.5,
        "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
    }
    assert apply_deepspeed_settings({"zero_optimization": {"stage": 2}}, config)["zero_optimization"] == {"stage": 2}

    def launched(kind, fsdp2=True, accumulation=4):
        plugin = SimpleNamespace(mixed_precision_policy="bf16 casts")
        return SimpleNamespace(
            distributed_type=getattr(accelerate.utils.DistributedType, kind),
            is_fsdp2=fsdp2,
            gradient_accumulation_steps=accumulation,
            state=SimpleNamespace(fsdp_plugin=plugin),
        )

    sharded = config_from_dict({**MINIMAL, "model": {"shard_base": True}, "optimizer": {"gradient_accumulation": 4}})
    with pytest.raises(EngineError, match=r"FSDP1 \(fsdp_version: 1\).*Set fsdp_version: 2"):
        configure_engine(launched("FSDP", fsdp2=False), sharded)
    with pytest.raises(EngineError, match=r"set \[model\] shard_base = true, or use DDP"):
        configure_engine(launched("FSDP"), config)
    fsdp = launched("FSDP")
    configure_engine(fsdp, sharded)
    policy = fsdp.state.fsdp_plugin.mixed_precision_policy  # no casts: autocast computes in bf16, as under DDP
    assert (policy.param_dtype, policy.reduce_dtype, policy.output_dtype) == (None, None, None)
    with pytest.raises(EngineError, match=r"sets gradient accumulation to 2 but \[optimizer\] gradient_accumulation is 4"):
        configure_engine(launched("MULTI_GPU", accumulation=2), config)


def test_gathered_weights_that_do_not_match_the_modules_are_not_saved(tmp_path):
    from fantasy_core.training.config import ModulesConfig
    from fantasy_core.training.trainable import WanShape, build_trainable

    modules, _ = build_trainable(ModulesConfig(identity=False, motion=False, audio_context_dim=8), WanShape(2, 16), 12, 512, None)
    state = modules.state_dict()
    modules.save(str(tmp_path / "whole.safetensors"), state={key: value * 2 for key, value in state.items()})
    saved = load_fantasytalking_file(str(tmp_path / "whole.safetensors")).audio.state_dict
    assert all(torch.equal(saved[key.removeprefix("audio.")], value * 2) for key, value in state.items())  # the given weights
    del state["audio.blocks.1.k_proj.weight"]
    with pytest.raises(ValueError, match=r"do not match the modules: missing \['audio.blocks.1.k_proj.weight'\], unexpected \[\]"):
        modules.save(str(tmp_path / "part.safetensors"), state=state)


@torch.no_grad()
def test_clip_level_audio_attention_hears_every_token_of_its_own_clip():
    config = AudioAdapterConfig(audio_dim=6, context_dim=8, model_dim=16, num_blocks=1)
    adapter = AudioAdapter(config)
    for p in adapter.parameters():
        p.copy_(torch.randn(p.shape) * 0.5)
    features = torch.randn(2, 11, 6)
    context = adapter.clip_context(features)
    assert context.clip_level and context.tokens.shape == (2, 11, 8) and context.k_lens.tolist() == [11, 11]
    q = torch.randn(2, 20, 16)
    out = clip_term(adapter, context, q)
    for b in range(2):
        tokens = adapter.proj_model(features[b])
        expected = naive_attention(q[b], tokens @ adapter.blocks[0].k_proj.weight.T, tokens @ adapter.blocks[0].v_proj.weight.T, 2)
        torch.testing.assert_close(out[b], expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_batched_frame_context_equals_each_row_alone():
    adapter = AudioAdapter(AudioAdapterConfig(audio_dim=6, context_dim=8, model_dim=16, num_blocks=1))
    for p in adapter.parameters():
        p.copy_(torch.randn(p.shape) * 0.5)
    features = torch.randn(3, 40, 6)
    windows = compute_audio_windows(40, 17)
    batched = adapter.frame_context(features, windows)
    for b in range(3):
        alone = adapter.frame_context(features[b], windows)
        torch.testing.assert_close(batched.tokens[b : b + 1], alone.tokens, rtol=1e-6, atol=1e-6)
        assert torch.equal(batched.k_lens[b : b + 1], alone.k_lens)


@torch.no_grad()
def test_per_row_contexts_with_some_rows_off_equal_each_row_computed_alone():
    wan, adapter, _, x, context = setup(batch=3)
    features = torch.randn(3, 30, adapter.config.audio_dim)
    per_row = adapter.clip_context(features)
    scales = torch.tensor([1.0, 0.0, 0.7])
    with tapped(wan, [branch_terms([0, 2], scales, adapter.keys_values(per_row, torch.float32))]):
        mixed = wan.blocks[0].cross_attn(x, context, IMG)
    for b in range(3):
        single = AudioContext(per_row.tokens[b : b + 1], per_row.k_lens[b : b + 1])
        rows = [0] if scales[b] else []
        with tapped(wan, [branch_terms(rows, scales[b : b + 1], adapter.keys_values(single, torch.float32))]):
            alone = wan.blocks[0].cross_attn(x[b : b + 1], context[b : b + 1], IMG)
        torch.testing.assert_close(mixed[b : b + 1], alone, rtol=1e-5, atol=1e-6)


def clip_term(adapter, context, q):
    """What every video token of each row hears of its own clip: the clip-level audio term of block 0 alone."""
    out = torch.zeros_like(q)
    term = branch_terms(range(q.shape[0]), torch.ones(q.shape[0]), adapter.keys_values(context, torch.float32))[0]
    term.add_to(out, q, 2)
    return out


def test_fresh_audio_adapter_adds_nothing_but_learns():
    adapter = initialise_audio_adapter(AudioAdapter(AudioAdapterConfig(audio_dim=6, context_dim=8, model_dim=16, num_blocks=1)))
    context = adapter.clip_context(torch.randn(1, 9, 6))
    q = torch.randn(1, 5, 16)
    with torch.no_grad():
        out = clip_term(adapter, context, q)
    assert torch.equal(out, torch.zeros_like(out))
    loss = (clip_term(adapter, adapter.clip_context(torch.randn(1, 9, 6)), q) - 1).pow(2).sum()
    loss.backward()
    assert adapter.blocks[0].v_proj.weight.grad.abs().sum() > 0

"""ComfyUI itself loads the pack from a custom_nodes folder, with no import failure."""

import os
import subprocess
import sys

from tiers import PACK_DIR


def custom_nodes_config(tmp_path):
    """A custom_nodes folder holding only this pack, and an extra_model_paths.yaml pointing ComfyUI at it."""
    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    os.symlink(PACK_DIR, custom_nodes / "fantasytalking-native")
    (tmp_path / "user").mkdir()
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"test:\n  custom_nodes: {custom_nodes}\n")
    return custom_nodes, config


def test_comfyui_imports_the_pack(comfyui_path, tmp_path):
    _, config = custom_nodes_config(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--cpu",
            "--quick-test-for-ci",
            "--disable-api-nodes",
            "--database-url",
            "sqlite:///:memory:",
            "--extra-model-paths-config",
            str(config),
            "--output-directory",
            str(tmp_path / "out"),
            "--user-directory",
            str(tmp_path / "user"),
        ],
        cwd=comfyui_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "IMPORT FAILED" not in log and "Error while calling comfy_entrypoint" not in log, log[-3000:]
    loaded = [line for line in log.splitlines() if "fantasytalking-native" in line and "seconds" in line]
    assert loaded, log[-3000:]


def test_nodes_register_without_optional_packages(comfyui_path, tmp_path):
    """With soxr unimportable the pack still loads, its nodes register, and the log says what is missing."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "soxr.py").write_text("raise ImportError('soxr blocked for this test')\n")
    custom_nodes, _ = custom_nodes_config(tmp_path)
    script = (
        "import sys, asyncio; sys.argv = ['main.py', '--cpu']; import comfy.options; comfy.options.enable_args_parsing(); "
        "import comfy.cli_args, utils.extra_config, nodes; "
        f"assert asyncio.run(nodes.load_custom_node({str(custom_nodes / 'fantasytalking-native')!r})); "
        "print('REGISTERED', sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith('FantasyTalking')))"
    )
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{comfyui_path}"}
    result = subprocess.run([sys.executable, "-c", script], cwd=comfyui_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FantasyTalkingAudioEmbeds" in result.stdout and "FantasyTalkingApply" in result.stdout
    assert "'soxr' is not installed" in result.stderr and "pip install -r requirements.txt" in result.stderr


def test_each_pack_file_is_loaded_once_under_one_name(comfy_nodes):
    """ComfyUI loads the pack under a name made from its folder; fantasy_core, fantasy_comfy (and the tests' own
    imports of them) are the same modules, not copies: one name per file, and the classes are the same objects."""
    import fantasy_comfy.patch
    import fantasy_core.dit.injection

    pack = os.path.realpath(PACK_DIR)
    names = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and os.path.realpath(file).startswith(pack + os.sep):
            names.setdefault(os.path.relpath(os.path.realpath(file), pack), []).append(name)
    assert {"nodes/apply.py", "fantasy_comfy/patch.py", "fantasy_core/dit/injection.py"} <= set(names)
    assert not {file: found for file, found in names.items() if len(found) != 1}
    assert names["fantasy_comfy/patch.py"] == ["fantasy_comfy.patch"]
    apply_module = sys.modules[comfy_nodes["FantasyTalkingApply"].__module__]
    assert apply_module.apply_fantasytalking is fantasy_comfy.patch.apply_fantasytalking
    assert fantasy_comfy.patch.Injection is fantasy_core.dit.injection.Injection


def test_a_second_copy_of_the_pack_is_refused_by_name(comfyui_path, tmp_path):
    """Two copies in custom_nodes would share one fantasy_core: the second says which folders to keep."""
    import shutil

    copy = tmp_path / "fantasytalking-fork"
    shutil.copytree(PACK_DIR, copy, ignore=shutil.ignore_patterns("tests", ".git", "__pycache__", "docs", "workflows", "benchmarks"))
    code = (
        f"import sys, asyncio; sys.path.insert(0, {str(PACK_DIR)!r}); import fantasy_core; "
        f"import importlib.util as u; spec = u.spec_from_file_location('fork', {str(copy / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(copy)!r}]); fork = u.module_from_spec(spec); spec.loader.exec_module(fork); "
        "fork.use_pack_folder()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"Two copies of the FantasyTalking pack are installed: {os.path.realpath(PACK_DIR)} and {copy}" in result.stderr

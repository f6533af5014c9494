"""The pack's shape: pure-PyTorch core, Registry metadata, and CI running the README's test command."""

import re
import subprocess
import sys

import tomllib
from tiers import PACK_DIR


def test_core_imports_without_comfyui():
    code = (
        "import sys, fantasy_core; "
        "leaked = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'comfy_extras', 'nodes')]; "
        "assert not leaked, leaked"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PACK_DIR, check=True)


def test_pyproject_is_ready_for_the_comfy_registry():
    data = tomllib.loads((PACK_DIR / "pyproject.toml").read_text())
    project = data["project"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,99}", project["name"]) and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["license"] and project["requires-python"]
    assert project["dynamic"] == ["dependencies"]
    assert data["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert project["urls"]["Repository"].startswith("https://")
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and "Icon" in comfy
    assert (PACK_DIR / project["license"]["file"]).is_file()


def test_requirements_have_lower_bounds_and_nothing_comfyui_already_brings():
    lines = [line.strip() for line in (PACK_DIR / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements
    for requirement in requirements:
        name = re.split(r"[<>=!~ ]", requirement)[0].lower()
        assert ">=" in requirement, requirement
        assert name not in {"torch", "torchaudio", "torchvision", "numpy", "transformers", "safetensors"}, requirement


def test_ci_runs_the_readme_test_command():
    readme = (PACK_DIR / "README.md").read_text()
    section = readme[readme.index("Run the whole test suite") :]
    command = re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()
    assert command == "bash scripts/test.sh"
    ci = [line.strip() for line in (PACK_DIR / ".ci" / "run").read_text().splitlines()]
    assert command in ci


def test_passes_the_comfy_registry_code_checks():
    """`comfy node validate` runs ruff with S102 (exec), S307 (eval) and E702 (statements on one line)."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "S102,S307,E702", "--no-cache", "."],
        cwd=PACK_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_installs_packages_at_import_or_install_time():
    assert not (PACK_DIR / "install.py").exists()
    for path in PACK_DIR.rglob("*.py"):
        if "tests" in path.parts:
            continue
        text = path.read_text()
        assert not re.search(r"[\"']pip[\"']\s*,\s*[\"']install[\"']", text), path  # subprocess([... "pip", "install" ...])
        assert "ensurepip" not in text and "pip.main" not in text and "pip._internal" not in text, path

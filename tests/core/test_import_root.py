"""The pack's import root and dependency direction, read from the source: fantasy_core (pure PyTorch) <- fantasy_comfy
(the ComfyUI-side machinery) <- nodes/ and fantasy_train; nothing imports the pack by string."""

import ast

import pytest
from tiers import PACK_DIR

COMFYUI = {
    "comfy",
    "comfy_api",
    "comfy_extras",
    "comfy_execution",
    "comfy_config",
    "folder_paths",
    "node_helpers",
    "latent_preview",
    "nodes",
    "server",
    "execution",
    "app",
}
PACK_PACKAGES = {"fantasy_core", "fantasy_comfy", "fantasy_train", "fantasytalking_cli"}
BY_STRING = {"import_module", "spec_from_file_location", "module_from_spec", "__import__", "run_module", "run_path"}


def imports_of(path) -> list[tuple[str, int, int]]:
    """(module, relative level, line) of every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, node.lineno))
    return found


def sources(package: str):
    return sorted((PACK_DIR / package).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("fantasy_core", COMFYUI | {"fantasy_comfy", "fantasy_train", "fantasytalking_cli"}),
        ("fantasy_comfy", {"fantasy_train", "fantasytalking_cli"}),
        ("fantasy_train", {"nodes", "fantasytalking_cli"}),
    ],
)
def test_each_package_imports_only_what_lies_below_it(package, forbidden):
    wrong = [
        f"{path.relative_to(PACK_DIR)}:{line} imports {module}"
        for path in sources(package)
        for module, level, line in imports_of(path)
        if level == 0 and top(module) in forbidden
    ]
    assert not wrong, wrong


def test_the_machinery_imports_no_node_file():
    """Relative imports stay inside fantasy_comfy; ``nodes`` is imported in host.py alone, which checks that it is
    ComfyUI's own module (the pack's node files are reachable only relative to the pack root)."""
    wrong = []
    for path in sources("fantasy_comfy"):
        for module, level, line in imports_of(path):
            if level > 1 or (level == 0 and top(module) == "nodes" and path.name != "host.py"):
                wrong.append(f"{path.relative_to(PACK_DIR)}:{line} imports {'.' * level}{module}")
    assert not wrong, wrong


def test_node_files_reach_the_pack_by_its_names_and_each_other_relatively():
    wrong = []
    for path in sources("nodes"):
        for module, level, line in imports_of(path):
            if level > 1 or (level == 0 and top(module) in {"fantasy_train", "fantasytalking_cli"}):
                wrong.append(f"{path.relative_to(PACK_DIR)}:{line} imports {'.' * level}{module}")
    assert not wrong, wrong


def test_nothing_imports_by_string():
    """No importlib.import_module, spec_from_file_location, __import__ or runpy in the pack's code (find_spec, which
    only asks whether an optional package is installed, is allowed)."""
    wrong = []
    for package in (*sorted(PACK_PACKAGES), "nodes"):
        for path in sources(package):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in BY_STRING:
                        wrong.append(f"{path.relative_to(PACK_DIR)}:{node.lineno} calls {name}")
    assert not wrong, wrong


def test_the_rule_sees_a_violation(tmp_path):
    """The checks above read real imports: a file that breaks each rule is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import comfy.model_management\nfrom ..nodes import patch\nimport importlib\nimportlib.import_module('nodes.patch')\n")
    assert [(top(m), level) for m, level, _ in imports_of(bad)] == [("comfy", 0), ("nodes", 2), ("importlib", 0)]
    calls = [n.func.attr for n in ast.walk(ast.parse(bad.read_text())) if isinstance(n, ast.Call)]
    assert calls == ["import_module"]

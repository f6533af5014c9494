"""The workflows in workflows/ (UI) and workflows/api/ (API): consistent, loadable in a real ComfyUI with the pack,
listed by the template browser, and runnable end to end (tiny stand-ins under the real model file names)."""

import json
import os
import uuid

import pytest
from conftest_helpers import http, wait_for
from graphs import mp4_streams
from shipped import LOADER_FOLDERS, NOT_PUBLIC, WORKFLOWS, cpu_sized_graph, load
from tiers import PACK_DIR


@pytest.fixture(scope="module")
def object_info(server):
    return http(server["port"], "/object_info")


def is_widget(spec):
    options = spec[1] if len(spec) > 1 else {}
    return not options.get("forceInput") and (isinstance(spec[0], list) or spec[0] in {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


def ui_to_api(ui, object_info):
    """What the frontend's 'Export (API)' produces from the UI file, restated from the node definitions."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        info = object_info[node["type"]]
        linked = {i["name"]: links[i["link"]] for i in node["inputs"] if i.get("link") is not None}
        inputs, values = {}, iter(node["widgets_values"])
        for section in ("required", "optional"):
            for name in info["input_order"].get(section, []):
                spec = info["input"][section][name]
                if is_widget(spec):
                    value = next(values)
                    options = spec[1] if len(spec) > 1 else {}
                    for extra in ("control_after_generate", "image_upload"):
                        if options.get(extra):
                            next(values)
                    if options.get("audio_upload"):
                        next(values), next(values)
                    if name not in linked:
                        inputs[name] = value
                if name in linked:
                    inputs[name] = [str(linked[name][1]), linked[name][2]]
        assert next(values, "end") == "end", f"{node['type']} has more widget values than widgets"
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": node["title"]}}
    return api


@pytest.mark.parametrize("name", WORKFLOWS)
def test_api_file_matches_ui_file_and_object_info(name, object_info):
    ui, api = load(name)
    assert ui_to_api(ui, object_info) == api
    for node_id, node in api.items():
        info = object_info[node["class_type"]]
        known = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        assert set(node["inputs"]) <= set(known), (node_id, node["class_type"])
        assert set(info["input"].get("required", {})) <= set(node["inputs"]), (node_id, node["class_type"])
        for input_name, value in node["inputs"].items():
            options = known[input_name][0]
            names_a_file = node["class_type"] in LOADER_FOLDERS or node["class_type"] in ("LoadImage", "LoadAudio")
            if isinstance(options, list) and not isinstance(value, list) and not names_a_file:
                assert value in options, (node["class_type"], input_name, value)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_model_loader_carries_its_download(name):
    ui, _ = load(name)
    uuid.UUID(ui["id"])  # the frontend's schema rejects a workflow whose id is not a UUID
    loaders = [n for n in ui["nodes"] if n["type"] in LOADER_FOLDERS]
    assert len(loaders) >= 6
    for node in loaders:
        widget, folder = LOADER_FOLDERS[node["type"]]
        if node["widgets_values"][0] in NOT_PUBLIC:
            assert "models" not in node["properties"]  # nothing to download: the Missing Models dialog must not offer it
            continue
        (model,) = node["properties"]["models"]
        assert model["name"] == node["widgets_values"][0]
        assert model["directory"] == folder
        assert model["url"].startswith("https://huggingface.co/") and "/resolve/main/" in model["url"]
        assert model["name"].endswith(".safetensors")  # the Missing Models dialog downloads nothing else


def test_official_settings_in_the_standard_workflow():
    _, api = load("fantasytalking_standard")
    by_type = {node["class_type"]: node["inputs"] for node in api.values()}
    sampler = by_type["FantasyTalkingSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["audio_cfg"], sampler["shift"], sampler["scheduler"]) == (
        30,
        5.0,
        4.5,
        5.0,
        "fantasytalking",
    )
    assert by_type["FantasyTalkingAudioEmbeds"]["fps"] == 23 and by_type["FantasyTalkingAudioEmbeds"]["max_frames"] == 81
    assert by_type["ImageScaleToMaxDimension"]["largest_size"] == 512
    assert by_type["CLIPVisionEncode"]["crop"] == "none"
    negatives = [n["inputs"]["text"] for n in api.values() if n["class_type"] == "CLIPTextEncode" and "Negative" in n["_meta"]["title"]]
    assert negatives and negatives[0].startswith("人物静止不动，静止，")


def test_template_browser_lists_only_the_ui_workflows(server):
    templates = http(server["port"], "/workflow_templates")
    assert sorted(templates["fantasytalking-native"]) == WORKFLOWS
    served = http(server["port"], "/api/workflow_templates/fantasytalking-native/fantasytalking_standard.json")
    assert served == load("fantasytalking_standard")[0]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_api_workflow_runs_to_an_mp4_with_sound(name, server, stand_ins):
    graph = cpu_sized_graph(name)
    reply = http(server["port"], "/prompt", {"prompt": graph, "client_id": "test"})
    assert not reply["node_errors"], reply
    outputs = wait_for(server, reply["prompt_id"])
    entries = [e for node in outputs.values() for e in node.get("images", [])]
    (entry,) = [e for e in entries if e["filename"].endswith(".mp4")]
    previews = [e for e in entries if not e["filename"].endswith(".mp4")]
    assert len(previews) == (1 if "identity" in name else 0)  # the identity workflow shows which face it chose
    info = mp4_streams(os.path.join(server["output"], entry["subfolder"], entry["filename"]))
    assert info["kinds"] == ["audio", "video"] and info["frames"] == 9
    assert info["audio_duration"] == pytest.approx(9 / 23, abs=0.08)


INTERFACE = PACK_DIR / "tests" / "comfyui" / "node_interface.json"


def node_interface(object_info):
    return {
        node_id: {
            "inputs": {section: names for section, names in object_info[node_id]["input_order"].items()},
            "outputs": object_info[node_id]["output"],
        }
        for node_id in sorted(object_info)
        if node_id.startswith("FantasyTalking") and object_info[node_id]["category"] == "FantasyTalking"
    }


def test_node_ids_and_input_names_are_stable(object_info):
    """Saved workflows depend on these. Changing them is a breaking change: bump the major version, then update
    node_interface.json deliberately."""
    assert node_interface(object_info) == json.loads(INTERFACE.read_text())


@pytest.mark.parametrize("widget, value", [("omega_lip", 1.5), ("omega_body", -0.2)])
def test_motion_intensity_outside_0_to_1_is_refused_through_the_api(server, stand_ins, widget, value):
    import urllib.error

    graph = cpu_sized_graph("fantasytalking_motion")
    (node_id,) = [key for key, node in graph.items() if node["class_type"] == "FantasyTalkingMotionIntensity"]
    graph[node_id]["inputs"][widget] = value
    with pytest.raises(urllib.error.HTTPError) as refused:
        http(server["port"], "/prompt", {"prompt": graph, "client_id": "test"})
    reply = json.loads(refused.value.read())
    errors = reply["node_errors"][node_id]["errors"]
    assert refused.value.code == 400 and any(widget in error["details"] for error in errors), reply

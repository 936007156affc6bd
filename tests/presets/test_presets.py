"""Presets: the built-ins validate, saved presets round-trip, conflicts and bad values say why,
and the new-job page loads a preset's values and saves the form as a new one."""

import re

from fastapi.testclient import TestClient

from app.core.spec import TrainingSpec
from app.presets.builtins import BUILTIN_PRESETS
from tests import factories
from tests.factories import instruction_rows

API = "/api/v1/presets"


def upload(client: TestClient, n: int = 20) -> str:
    return factories.upload(client, instruction_rows(n, "q{i}", "a{i}"))


def input_value(page: str, name: str) -> str:
    match = re.search(rf'<input id="f-{name}" name="{name}"[^>]*value="([^"]*)"', page)
    assert match, name
    return match.group(1)


def test_every_builtin_is_a_valid_spec_over_the_seed_defaults() -> None:
    by_name = {preset.name: preset.spec() for preset in BUILTIN_PRESETS}
    assert list(by_name) == ["seed-defaults", "small-task", "large-task", "low-memory"]
    for preset in BUILTIN_PRESETS:
        assert isinstance(TrainingSpec.model_validate(preset.overrides), TrainingSpec)
        assert preset.description and "\n" not in preset.description
    assert by_name["seed-defaults"] == TrainingSpec()
    assert (by_name["small-task"].r, by_name["small-task"].lora_alpha) == (4, 4)
    large = by_name["large-task"]
    assert (large.r, large.lora_alpha, large.target_modules) == (32, 64, "attention+mlp")
    low = by_name["low-memory"]
    assert (low.quantization, low.bnb_4bit_quant_type, low.bnb_4bit_use_double_quant) == ("4bit", "nf4", True)
    assert (low.max_seq_length, low.layers_to_transform, low.gradient_checkpointing) == (512, "last 8", True)
    assert (low.batch_size, low.gradient_accumulation_steps, low.r) == (4, 8, 8)


def test_builtins_are_listed_first_with_every_spec_field(client: TestClient) -> None:
    response = client.get(API)
    assert response.status_code == 200
    presets = response.json()["data"]
    assert [p["id"] for p in presets] == ["seed-defaults", "small-task", "large-task", "low-memory"]
    for preset in presets:
        assert preset["object"] == "preset" and preset["builtin"] is True and preset["description"]
        assert set(preset["hyperparameters"]) == set(TrainingSpec.model_fields)
    assert presets[0]["hyperparameters"] == TrainingSpec().model_dump(mode="json")
    large = client.get(f"{API}/large-task").json()["hyperparameters"]
    assert (large["r"], large["lora_alpha"], large["target_modules"]) == (32, 64, "attention+mlp")


def test_saved_preset_round_trips_and_its_values_start_a_job(client: TestClient, tiny_model: str) -> None:
    hp = {"r": 16, "lora_alpha": 32, "target_modules": "q_proj, v_proj", "layers_to_transform": "last 1"}
    body = {"name": "support r16", "description": "Support bot, rank 16", "hyperparameters": hp}
    response = client.post(API, json=body)
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["id"].startswith("preset-") and saved["builtin"] is False
    assert (saved["name"], saved["description"]) == ("support r16", "Support bot, rank 16")
    assert saved["hyperparameters"] == TrainingSpec.model_validate(hp).model_dump(mode="json")
    assert saved["hyperparameters"]["target_modules"] == ["q_proj", "v_proj"]

    listed = client.get(API).json()["data"]
    assert [p["builtin"] for p in listed] == [True] * 4 + [False] and listed[-1] == saved
    assert client.get(f"{API}/{saved['id']}").json() == saved

    job = client.post(
        "/api/v1/fine_tuning/jobs",
        json={
            "model": tiny_model,
            "training_file": upload(client),
            "hyperparameters": saved["hyperparameters"],
        },
    )
    assert job.status_code == 200, job.text
    assert job.json()["hyperparameters"] == saved["hyperparameters"]


def test_duplicate_names_and_deleting_a_builtin_conflict(client: TestClient) -> None:
    assert client.post(API, json={"name": "Mine"}).status_code == 200
    for name in ("mine", "MINE", "Large-Task"):
        response = client.post(API, json={"name": name, "hyperparameters": {"r": 4}})
        assert response.status_code == 409, name
        error = response.json()["error"]
        assert error["type"] == "conflict_error" and error["param"] == "name"
        assert error["message"] == f"a preset named {name!r} already exists"
    builtin = client.delete(f"{API}/seed-defaults")
    assert builtin.status_code == 409
    assert builtin.json()["error"]["message"] == "built-in presets cannot be deleted"
    assert len(client.get(API).json()["data"]) == 5


def test_bad_values_are_422_naming_the_field(client: TestClient) -> None:
    cases = [
        ({"name": "x", "hyperparameters": {"r": 0}}, "hyperparameters.r"),
        ({"name": "x", "hyperparameters": {"colour": 1}}, "hyperparameters.colour"),
        (
            {"name": "x", "hyperparameters": {"target_modules": "q_proj;rm -rf"}},
            "hyperparameters.target_modules",
        ),
        ({"name": "a/b"}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 65}, "name"),
        ({"name": "x", "description": "d" * 201}, "description"),
    ]
    for body, field in cases:
        response = client.post(API, json=body)
        assert response.status_code == 422, body
        assert [d["field"] for d in response.json()["error"]["details"]] == [field], body
    assert client.post(API, json={"name": "  ok name_1.2-b  "}).json()["name"] == "ok name_1.2-b"


def test_delete_a_saved_preset(client: TestClient) -> None:
    preset_id = client.post(API, json={"name": "temp"}).json()["id"]
    response = client.delete(f"{API}/{preset_id}")
    assert response.status_code == 200 and response.json() == {
        "id": preset_id,
        "object": "preset",
        "deleted": True,
    }
    assert client.get(f"{API}/{preset_id}").status_code == 404
    assert client.delete(f"{API}/{preset_id}").status_code == 404
    assert client.post(API, json={"name": "TEMP"}).status_code == 200  # the name is free again


def test_page_loads_a_preset_and_keeps_what_to_train(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client)
    page = client.get("/jobs/new", params={"preset": "large-task", "training_file": file_id, "seed": "7"})
    assert page.status_code == 200
    text = page.text
    assert input_value(text, "r") == "32" and input_value(text, "lora_alpha") == "64"
    assert input_value(text, "target_modules") == "attention+mlp"
    assert '<option value="large-task" selected>large-task</option>' in text
    assert re.search(rf'<option value="{file_id}" selected>', text) and input_value(text, "seed") == "7"
    assert 'formaction="/jobs/new" formmethod="get"' in text and 'formaction="/presets"' in text
    low = client.get("/jobs/new?preset=low-memory").text
    assert input_value(low, "layers_to_transform") == "last 8" and input_value(low, "max_seq_length") == "512"
    assert re.search(r'<select id="f-quantization" name="quantization">.*?<option selected>4bit', low)
    assert client.get("/jobs/new?preset=nope", headers={"accept": "text/html"}).status_code == 404


def test_saving_from_the_page_redirects_to_the_new_preset(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client)
    form = {
        "model": tiny_model,
        "training_file": file_id,
        "preset": "seed-defaults",
        "r": "16",
        "lora_alpha": "32",
        "gradient_checkpointing": ["false", "true"],
        "bnb_4bit_use_double_quant": ["false", "true"],
        "preset_name": "From the page",
        "preset_description": "r16 from the form",
    }
    response = client.post("/presets", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    saved = client.get(API).json()["data"][-1]
    assert location.startswith(f"/jobs/new?preset={saved['id']}&") and f"training_file={file_id}" in location
    assert (saved["name"], saved["description"]) == ("From the page", "r16 from the form")
    hp = saved["hyperparameters"]
    assert (hp["r"], hp["lora_alpha"], hp["gradient_checkpointing"], hp["use_dora"]) == (16, 32, True, False)

    page = client.get(location).text
    assert f'<option value="{saved["id"]}" selected>From the page</option>' in page
    assert '<optgroup label="Saved">' in page and input_value(page, "r") == "16"
    assert "r16 from the form" in page

    duplicate = client.post("/presets", data={**form, "preset_name": "from the PAGE"})
    assert (
        duplicate.status_code == 409 and "already exists" in duplicate.text and 'name="r"' in duplicate.text
    )
    bad_spec = client.post("/presets", data={**form, "r": "0", "preset_name": "other"})
    assert bad_spec.status_code == 422 and "Please fix 1 field" in bad_spec.text
    assert "greater than or equal to 1" in bad_spec.text
    bad_name = client.post("/presets", data={**form, "preset_name": "no/slashes"})
    assert bad_name.status_code == 422 and 'href="#f-preset_name"' in bad_name.text
    assert input_value(bad_name.text, "preset_name") == "no/slashes"
    assert len(client.get(API).json()["data"]) == 5

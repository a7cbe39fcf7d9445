"""Hub publishing: model cards (offline validation), push through a recording fake API, the remote-code export."""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tiny_pipeline, sample_without_the_package
from huggingface_hub import RepoUrl, metadata_load
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects
from PIL import Image

from vaebm_hub import VAEBMMLPVAE, LangevinScheduler, VAEBMEnergyMLP, VAEBMPipeline
from vaebm_hub.hub import add_remote_code, create_model_card, export_remote_code, push_pipeline, validate_model_card
from vaebm_hub.hub.cards import CODE_BLOCK
from vaebm_hub.hub.remote_code import _lazy_replacement, check_no_name_clashes, module_closure, read_source_module

REPO_ID = "someone/tiny-vaebm"
PIPELINE_FILES = {
    "model_index.json",
    "ebm/config.json",
    "ebm/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
}
CODE_FILES = {  # the published layout's generated code (vaebm_hub.hub.remote_code)
    "pipeline_vaebm.py",
    "vae/modeling_vaebm_vae.py",
    "ebm/modeling_vaebm_ebm.py",
    "scheduler/scheduling_vaebm_langevin.py",
}


def make_tiny_mlp_pipeline() -> VAEBMPipeline:
    torch.manual_seed(0)
    vae = VAEBMMLPVAE(hidden_dim=16)
    torch.manual_seed(1)
    ebm = VAEBMEnergyMLP()
    scheduler = LangevinScheduler(default_num_inference_steps=3, step_size=5e-3)
    pipe = VAEBMPipeline(vae=vae.eval(), ebm=ebm.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "pipeline"
    make_tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1; pushing through a fake API must behave as when online."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


class RecordingHubApi:
    """Stands in for ``HfApi``: records the created repo and "uploads" what ``upload_folder`` would send."""

    def __init__(self, remote: Path) -> None:
        self.remote = remote
        self.created: dict | None = None
        self.uploaded: list[str] | None = None
        self.commit_message: str | None = None

    def create_repo(self, repo_id, *, private=None, exist_ok=False, token=None, **kwargs):
        self.created = {"repo_id": repo_id, "private": private, "exist_ok": exist_ok, "token": token, **kwargs}
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, commit_message=None, token=None, **kwargs):
        present = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        self.uploaded = list(filter_repo_objects(present, allow_patterns=allow_patterns))
        self.commit_message = commit_message
        for rel in self.uploaded:
            (self.remote / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(folder_path) / rel, self.remote / rel)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")

    @property
    def card_yaml(self) -> dict:
        return metadata_load(self.remote / "README.md")


# ---------------------------------------------------------------------------------------------------- model cards
def test_trained_card_has_metadata_tables_and_sample_grid(saved_dir, tmp_path):
    folder = tmp_path / "pipeline"
    shutil.copytree(saved_dir, folder)
    grid = tmp_path / "grid.jpg"
    Image.new("RGB", (16, 16), "white").save(grid)
    card = create_model_card(
        folder,
        repo_id=REPO_ID,
        datasets=["ylecun/mnist"],
        license="apache-2.0",
        training_config={"learning_rate": 5e-5, "langevin_steps": 6, "dataset": "mnist|digits"},
        metrics={"FID": 12.5},
        sample_grid=str(grid),
    )
    card.save(folder / "README.md")

    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "vaebm_hub"
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert meta["tags"] == ["vaebm", "energy-based-model", "nvae", "diffusers", "langevin"]
    assert meta["datasets"] == ["ylecun/mnist"] and meta["license"] == "apache-2.0"
    assert "base_model" not in meta
    text = card.text
    assert f'VAEBMPipeline.from_pretrained("{REPO_ID}")' in text
    assert "| `learning_rate` | 5e-05 |" in text and "| `dataset` | mnist\\|digits |" in text
    assert "| `FID` | 12.5 |" in text
    assert "| `vae` | `VAEBMVAE` |" in text and "| `sample_size` | 8 |" in text
    assert "Langevin potential: `exact`" in text and "decoder's samples" not in text  # VAEBM's decoder means
    assert "![VAEBM samples](samples.png)" in text
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "decoder_output": "sample"}))
    assert "Images: the decoder's samples" in create_model_card(folder, repo_id=REPO_ID).text
    with Image.open(folder / "samples.png") as copied:
        assert copied.format == "PNG" and copied.size == (16, 16)
    validate_model_card(folder / "README.md", repo_id=REPO_ID)


def test_converted_card_defaults_to_nvidia_license_and_states_provenance(saved_dir):
    card = create_model_card(
        saved_dir,
        repo_id=REPO_ID,
        kind="converted",
        base_model="someone/nvae-mnist",
        provenance="Converted from `mnist/checkpoint.pt` with `vaebm-hub convert`.",
    )
    data = card.data
    assert (data.license, data.license_name) == ("other", "nvidia-source-code-license-nc")
    assert data.license_link.startswith("https://github.com/NVlabs/")
    assert data.base_model == "someone/nvae-mnist"
    prose = " ".join(card.text.split())
    assert "converted from NVIDIA's official NVAE / VAEBM checkpoints" in prose
    assert "NVIDIA Source Code License (non-commercial)" in prose
    assert "never downloads or redistributes NVIDIA's checkpoints" in prose
    assert "## Provenance Converted from `mnist/checkpoint.pt`" in prose
    validate_model_card(str(card), repo_id=REPO_ID)  # the card's text, as read from a README


@pytest.mark.parametrize("make_pipeline", [make_tiny_pipeline, make_tiny_mlp_pipeline], ids=["images", "vectors"])
def test_card_usage_snippet_runs(make_pipeline, tmp_path, monkeypatch):
    folder = tmp_path / "pipeline"
    make_pipeline().save_pretrained(folder)
    (snippet,) = CODE_BLOCK.findall(create_model_card(folder).text)
    assert f'from_pretrained("{folder}")' in snippet
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "card_snippet", "exec"), {})
    if make_pipeline is make_tiny_pipeline:
        with Image.open(tmp_path / "vaebm_samples.png") as grid:
            assert grid.size == (4 * 8, 4 * 8)
    else:
        import numpy as np

        assert np.load(tmp_path / "vaebm_samples.npy").shape == (1000, 2)


def test_validate_model_card_lists_every_problem(saved_dir, tmp_path):
    card = create_model_card(saved_dir, repo_id=REPO_ID)
    card.data.library_name = "transformers"
    card.data.license = "other"
    card.text += "\n![missing](nowhere.png)\n\n```python\nimport (\n```\n"
    with pytest.raises(ValueError) as info:
        validate_model_card(card, repo_id="someone/another-repo", folder=tmp_path)
    message = str(info.value)
    for problem in ("library_name", "license_name", "does not compile", "someone/another-repo", "nowhere.png"):
        assert problem in message


def test_create_model_card_rejects_bad_input(saved_dir, tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        create_model_card(saved_dir, kind="finetuned")
    with pytest.raises(ValueError, match="no model_index.json"):
        create_model_card(tmp_path)


# ---------------------------------------------------------------------------------------------------- push
def test_push_uploads_only_pipeline_files(saved_dir, tmp_path, online):
    folder = tmp_path / "trained"
    shutil.copytree(saved_dir, folder)
    junk = ["checkpoint-500/model.safetensors", "checkpoint-500/config.json", "logs/events.out.tfevents.1",
            "ebm/diffusion_pytorch_model.bin", "ebm/optimizer.pt", "ebm/ema/config.json", "ebm_ema/config.json",
            "ebm_ema/diffusion_pytorch_model.safetensors", "train_config.yaml"]  # fmt: skip
    for rel in junk:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("not for the Hub")
    Image.new("RGB", (8, 8)).save(folder / "samples.png")
    api = RecordingHubApi(tmp_path / "remote")
    before = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))

    url = push_pipeline(folder, REPO_ID, token="hf_test", private=True, api=api)

    assert url == f"https://huggingface.co/{REPO_ID}/commit/0123abc"
    assert api.created == {"repo_id": REPO_ID, "private": True, "exist_ok": True, "token": "hf_test"}
    assert set(api.uploaded) == PIPELINE_FILES | CODE_FILES | {"README.md", "samples.png"}
    assert api.card_yaml["library_name"] == "diffusers"  # the published layout loads with plain diffusers
    readme = (api.remote / "README.md").read_text()
    assert f'from_pretrained("{REPO_ID}")' in readme and "![VAEBM samples](samples.png)" in readme
    validate_model_card(api.remote / "README.md", repo_id=REPO_ID)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == before  # the source is untouched


def test_push_keeps_the_folders_card_pointed_at_the_repo(saved_dir, tmp_path, online):
    folder = tmp_path / "converted"
    shutil.copytree(saved_dir, folder)
    create_model_card(folder, kind="converted", metrics={"FID": 9.9}).save(folder / "README.md")  # local snippet

    api = RecordingHubApi(tmp_path / "remote")
    push_pipeline(folder, REPO_ID, api=api)
    readme = (api.remote / "README.md").read_text()
    assert api.card_yaml["license"] == "other" and api.card_yaml["model_name"] == "tiny-vaebm"
    assert "| `FID` | 9.9 |" in readme and f'VAEBMPipeline.from_pretrained("{REPO_ID}")' in readme
    assert str(folder) not in readme

    (folder / "README.md").write_text("# my notes\n")  # not a model card: replaced by a fresh one
    api = RecordingHubApi(tmp_path / "remote2")
    push_pipeline(folder, REPO_ID, api=api)
    assert api.card_yaml["library_name"] == "diffusers" and "my notes" not in (api.remote / "README.md").read_text()


def test_push_pipeline_object_round_trips(tmp_path, online):
    pipe = make_tiny_pipeline()
    api = RecordingHubApi(tmp_path / "remote")
    push_pipeline(pipe, REPO_ID, api=api, commit_message="first upload")
    assert set(api.uploaded) == PIPELINE_FILES | CODE_FILES | {"README.md"} and api.commit_message == "first upload"

    reloaded = VAEBMPipeline.from_pretrained(api.remote)  # the package's own classes, no code is run
    assert type(reloaded.vae) is type(pipe.vae) and type(reloaded.scheduler) is LangevinScheduler
    reloaded.set_progress_bar_config(disable=True)
    kwargs = {"batch_size": 2, "num_inference_steps": 2, "output_type": "pt"}
    expected = pipe(generator=torch.Generator().manual_seed(3), **kwargs).images
    torch.testing.assert_close(reloaded(generator=torch.Generator().manual_seed(3), **kwargs).images, expected)
    resaved = tmp_path / "resaved"
    reloaded.save_pretrained(resaved)  # a local save is the package layout again
    assert json.loads((resaved / "model_index.json").read_text())["_class_name"] == "VAEBMPipeline"


def test_pushed_repo_loads_with_plain_diffusers_without_the_package(tmp_path, online):
    pipe = make_tiny_pipeline()
    api = RecordingHubApi(tmp_path / "remote")
    push_pipeline(pipe, REPO_ID, api=api)
    results = sample_without_the_package({"pushed": api.remote}, tmp_path)
    for step_size in (None, 2e-2):
        out = pipe(batch_size=2, num_inference_steps=2, step_size=step_size, output_type="pt",
                   generator=torch.Generator().manual_seed(7), return_energy_trace=True)  # fmt: skip
        images, trace = results[f"pushed/{step_size}"]
        torch.testing.assert_close(images, out.images, rtol=0, atol=1e-6)
        torch.testing.assert_close(trace, out.energy_trace, rtol=0, atol=1e-5)


def test_push_can_keep_the_package_layout(tmp_path, online):
    api = RecordingHubApi(tmp_path / "remote")
    push_pipeline(make_tiny_pipeline(), REPO_ID, api=api, remote_code=False)
    assert set(api.uploaded) == PIPELINE_FILES | {"README.md"} and api.card_yaml["library_name"] == "vaebm_hub"


def test_add_remote_code_in_place_is_idempotent_and_keeps_weights(saved_dir, tmp_path):
    folder = tmp_path / "published"
    shutil.copytree(saved_dir, folder)
    add_remote_code(folder)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == PIPELINE_FILES | CODE_FILES
    for rel in PIPELINE_FILES - {"model_index.json"}:
        assert (folder / rel).read_bytes() == (saved_dir / rel).read_bytes(), rel
    snapshot = {rel: (folder / rel).read_bytes() for rel in files}
    add_remote_code(folder)
    assert {rel: (folder / rel).read_bytes() for rel in files} == snapshot


def test_push_with_variant_uploads_only_that_variant(tmp_path, online):
    api = RecordingHubApi(tmp_path / "remote")
    push_pipeline(make_tiny_pipeline(), REPO_ID, api=api, variant="ema")
    weights = {f for f in api.uploaded if f.endswith(".safetensors")}
    assert weights == {"ebm/diffusion_pytorch_model.ema.safetensors", "vae/diffusion_pytorch_model.ema.safetensors"}


def test_push_fails_at_once_when_offline(saved_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    api = RecordingHubApi(tmp_path / "remote")
    start = time.perf_counter()
    with pytest.raises(OfflineModeIsEnabled, match="HF_HUB_OFFLINE"):
        push_pipeline(saved_dir, REPO_ID, api=api)
    with pytest.raises(OfflineModeIsEnabled, match="HF_HUB_OFFLINE"):
        push_pipeline(saved_dir, REPO_ID)  # the real HfApi: no network attempt, no retries
    assert time.perf_counter() - start < 1.0
    assert api.created is None and api.uploaded is None


def test_push_refuses_folder_without_safetensors(saved_dir, tmp_path, online):
    folder = tmp_path / "bin_only"
    shutil.copytree(saved_dir, folder)
    weights = folder / "ebm" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    api = RecordingHubApi(tmp_path / "remote")
    with pytest.raises(ValueError, match="component 'ebm' has no safetensors weights"):
        push_pipeline(folder, REPO_ID, api=api)
    assert api.created is None


# ---------------------------------------------------------------------------------------------------- remote code
def test_module_closure_lists_dependencies_first():
    order = module_closure(["vaebm_hub.models.modeling_vae"])
    assert order[-1] == "vaebm_hub.models.modeling_vae" and "vaebm_hub.models.layers" in order
    for i, name in enumerate(order):
        assert all(order.index(target) < i for _, target in read_source_module(name).package_imports)


def test_name_clash_check():
    check_no_name_clashes({"a": {"x": (1, "same")}, "b": {"x": (1, "same"), "__doc__": "ignored"}})
    with pytest.raises(ValueError, match="'f' means different things in a and b"):
        check_no_name_clashes({"a": {"f": lambda: 1}, "b": {"f": lambda: 2}})


def test_imports_inside_functions_are_rewritten_for_the_export():
    node = ast.parse("from .layers import swish as act, soft_clamp").body[0]
    layers = "vaebm_hub.models.layers"
    assert _lazy_replacement(node, layers, {layers}, {}) == "act = swish"  # already in this file
    provided = {layers: ".vae.modeling_vaebm_vae"}
    assert _lazy_replacement(node, layers, set(), provided) == (
        "from .vae.modeling_vaebm_vae import swish as act, soft_clamp"
    )  # another component's file has it
    missing = _lazy_replacement(ast.parse("import vaebm_hub").body[0], "vaebm_hub", {layers}, provided)
    assert missing.startswith("raise ImportError(") and "pip install vaebm-hub" in missing


def _package_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    return [name for name in names if name.split(".")[0] == "vaebm_hub"]


def test_export_layout_is_self_contained_and_deterministic(saved_dir, tmp_path):
    first = export_remote_code(saved_dir, tmp_path / "first")
    second = export_remote_code(make_tiny_pipeline(), tmp_path / "second")
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(
        PIPELINE_FILES
        | {"pipeline_vaebm.py", "vae/modeling_vaebm_vae.py", "ebm/modeling_vaebm_ebm.py",
           "scheduler/scheduling_vaebm_langevin.py"}
    )  # fmt: skip
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    index = json.loads((first / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_vaebm", "VAEBMPipeline"]
    assert index["vae"] == ["modeling_vaebm_vae", "VAEBMVAE"] and index["potential"] == "exact"
    for code in first.rglob("*.py"):
        assert _package_imports(code) == [], code
    pipeline_code = (first / "pipeline_vaebm.py").read_text()
    assert "from .scheduler.scheduling_vaebm_langevin import LangevinScheduler" in pipeline_code
    assert "raise ImportError('vaebm_hub.hub is not part of this remote-code export" in pipeline_code
    with pytest.raises(ValueError, match="not an empty folder"):
        export_remote_code(saved_dir, first)


def test_export_loads_without_the_package_and_matches(tmp_path):
    pipes = {"conv": make_tiny_pipeline(), "mlp": make_tiny_mlp_pipeline()}
    args = []
    for name, pipe in pipes.items():  # two exports in one process share diffusers' `local` module cache
        args += [name, str(export_remote_code(pipe, tmp_path / name))]
    results = sample_without_the_package(dict(zip(args[::2], args[1::2])), tmp_path)
    for name, pipe in pipes.items():
        for step_size in (None, 2e-2):
            out = pipe(batch_size=2, num_inference_steps=2, step_size=step_size, output_type="pt",
                       generator=torch.Generator().manual_seed(7), return_energy_trace=True)  # fmt: skip
            images, trace = results[f"{name}/{step_size}"]
            torch.testing.assert_close(images, out.images, rtol=0, atol=1e-6)
            torch.testing.assert_close(trace, out.energy_trace, rtol=0, atol=1e-5)
        assert "pip install vaebm-hub" in results[f"{name}/push_error"]


def test_push_remote_code_export_sends_its_code_and_a_diffusers_card(saved_dir, tmp_path, online):
    export = export_remote_code(saved_dir, tmp_path / "export")
    api = RecordingHubApi(tmp_path / "remote")
    push_pipeline(export, REPO_ID + "-remote-code", api=api)
    assert {"pipeline_vaebm.py", "vae/modeling_vaebm_vae.py", "scheduler/scheduling_vaebm_langevin.py"} <= set(
        api.uploaded
    )
    assert api.card_yaml["library_name"] == "diffusers"
    readme = (api.remote / "README.md").read_text()
    assert f'DiffusionPipeline.from_pretrained("{REPO_ID}-remote-code", trust_remote_code=True)' in readme
    validate_model_card(api.remote / "README.md", repo_id=REPO_ID + "-remote-code")

"""Model cards for saved VAEBM pipelines (the Jinja templates in ``model_cards/``) and their offline validation.

``ModelCard.validate()`` posts the card to the Hub; :func:`validate_model_card` checks what we can check offline:
the YAML metadata, the usage snippet (compiles, names the right repository) and the images it links.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from PIL import Image

from ..constants import LIBRARY_NAME
from .files import SAMPLE_GRID_NAME, component_entries, read_model_index

# ``hub/templates`` links to the repository's ``model_cards/``; wheels carry the templates as package data.
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATES = {"trained": "vaebm_pipeline.md", "converted": "converted_nvae.md"}
PIPELINE_TAG = "unconditional-image-generation"
TAGS = ["vaebm", "energy-based-model", "nvae", "diffusers", "langevin"]
NVIDIA_LICENSE = {
    "license": "other",
    "license_name": "nvidia-source-code-license-nc",
    "license_link": "https://github.com/NVlabs/NVAE/blob/master/LICENSE",
}
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _template_path(kind: str) -> Path:
    if kind not in TEMPLATES:
        raise ValueError(f"kind must be one of {sorted(TEMPLATES)}, got {kind!r}")
    path = TEMPLATE_DIR / TEMPLATES[kind]
    if not path.is_file():
        raise ValueError(f"model card template {path} is missing; reinstall vaebm_hub (templates are package data)")
    return path


def is_remote_code(index: dict) -> bool:
    """Whether ``model_index.json`` describes the remote-code flavour (``_class_name: [module, class]``)."""
    return isinstance(index.get("_class_name"), list)


def usage_snippet(source: str, *, images: bool = True, remote_code: bool = False) -> str:
    """Python code that loads the pipeline from ``source`` (Hub id or folder), samples with a seed and saves it."""
    if remote_code:
        head = [
            "# pip install diffusers torch  (the model code ships with this repository; with `pip install vaebm-hub`,",
            f'# `vaebm_hub.VAEBMPipeline.from_pretrained("{source}")` loads it as well)',
            "import torch",
            "from diffusers import DiffusionPipeline",
        ]
        load = f'pipe = DiffusionPipeline.from_pretrained("{source}", trust_remote_code=True)'
    else:
        head = ["# pip install vaebm-hub", "import torch", "from vaebm_hub import VAEBMPipeline"]
        load = f'pipe = VAEBMPipeline.from_pretrained("{source}")'
    if images:
        head.insert(2, "from diffusers.utils import make_image_grid")
        sample = [
            "images = pipe(batch_size=16, generator=generator).images  # 16 PIL images after the Langevin chain",
            'make_image_grid(images, rows=4, cols=4).save("vaebm_samples.png")',
        ]
    else:
        head.insert(1, "import numpy as np")
        sample = [
            'samples = pipe(batch_size=1000, generator=generator, output_type="np").images  # (1000, features)',
            'np.save("vaebm_samples.npy", samples)',
        ]
    body = [load, 'pipe = pipe.to("cuda" if torch.cuda.is_available() else "cpu")']
    body += ["generator = torch.Generator().manual_seed(0)", *sample]
    return "\n".join([*head, "", *body])


def _cell(value) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    elif isinstance(value, (list, dict)):
        value = json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: dict, header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    return "\n".join(lines + [f"| `{_cell(k)}` | {_cell(v)} |" for k, v in rows.items()])


def _read_config(folder: Path) -> dict:
    for name in ("config.json", "scheduler_config.json"):
        if (folder / name).is_file():
            return {k: v for k, v in json.loads((folder / name).read_text()).items() if not k.startswith("_")}
    raise ValueError(f"{folder} has neither config.json nor scheduler_config.json")


def _data_description(vae_config: dict) -> tuple[str, bool]:
    """(what the VAE models, whether it is images) from the VAE's config."""
    if "sample_size" in vae_config:
        size, channels = vae_config["sample_size"], vae_config.get("in_channels", 3)
        return f"{channels}×{size}×{size} images", True
    return f"{vae_config.get('in_features', '?')}-dimensional vectors", False


def _components(folder: Path, index: dict) -> str:
    """A components table, the Langevin potential and one collapsible config table per component."""
    entries = component_entries(index)
    rows = ["| component | class |", "| --- | --- |"] + [f"| `{k}` | `{v[1]}` |" for k, v in entries.items()]
    parts = ["\n".join(rows)]
    if "potential" in index:
        parts.append(f"Langevin potential: `{index['potential']}`.")
    if index.get("decoder_output") == "sample":
        parts.append(
            "Images: the decoder's samples at the chains' final `(z, eps_x)` (`decoder_output=\"sample\"`), not "
            'VAEBM\'s decoder means; `pipe(..., decoder_output="mean")` gives those.'
        )
    for name in entries:
        config = _read_config(folder / name)
        parts.append(
            f"<details><summary><code>{name}</code> config</summary>\n\n{_table(config, ('key', 'value'))}\n\n"
            "</details>"
        )
    return "\n\n".join(parts)


def _copy_sample_grid(sample_grid: str | os.PathLike, folder: Path) -> str:
    target = folder / SAMPLE_GRID_NAME
    if Path(sample_grid).resolve() != target.resolve():
        with Image.open(sample_grid) as image:
            image.save(target, format="PNG")
    return SAMPLE_GRID_NAME


def create_model_card(
    pipeline_dir: str | Path,
    *,
    repo_id: str | None = None,
    kind: str = "trained",
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
    training_config: dict | None = None,
    metrics: dict | None = None,
    sample_grid: str | None = None,
    provenance: str | None = None,
) -> ModelCard:
    """Model card for the saved pipeline in ``pipeline_dir``, from ``model_cards/<template>.md``.

    ``kind="trained"`` uses ``vaebm_pipeline.md``; ``"converted"`` uses ``converted_nvae.md`` and defaults the license
    to NVIDIA's non-commercial Source Code License (``license: other``). The usage snippet loads ``repo_id`` (or the
    folder when ``None``). ``training_config`` and ``metrics`` become ``key | value`` tables; ``sample_grid`` (an image
    path) is copied into ``pipeline_dir`` as ``samples.png`` and linked relatively. Save with ``card.save(path)``.
    """
    template = _template_path(kind)
    folder = Path(pipeline_dir)
    index = read_model_index(folder)
    if repo_id is not None:
        validate_repo_id(repo_id)
    remote_code = is_remote_code(index)
    if "vae" not in component_entries(index):
        raise ValueError(f"{folder}/model_index.json has no 'vae' component; is this a VAEBM pipeline?")
    data, images = _data_description(_read_config(folder / "vae"))

    licensing = dict(NVIDIA_LICENSE) if kind == "converted" else {}
    if license is not None:
        licensing = {"license": license} if license != licensing.get("license") else licensing
    card_data = ModelCardData(
        library_name="diffusers" if remote_code else LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=list(TAGS),
        datasets=datasets,
        base_model=base_model,
        model_name=(repo_id or folder.resolve().name).split("/")[-1],
        **licensing,
    )
    title = card_data.model_name if kind == "trained" else f"{card_data.model_name} (converted NVAE / VAEBM)"
    flavour = " Remote-code flavour: loads with plain diffusers and `trust_remote_code=True`." if remote_code else ""
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        title=title,
        summary=f"A VAEBM pipeline for {data}.{flavour}",
        usage=usage_snippet(repo_id or str(folder), images=images, remote_code=remote_code),
        components=_components(folder, index),
        training=_table(training_config, ("setting", "value")) if training_config else "",
        metrics=_table(metrics, ("metric", "value")) if metrics else "",
        samples=_copy_sample_grid(sample_grid, folder) if sample_grid else None,
        provenance=provenance,
    )


def validate_model_card(
    card: ModelCard | str | os.PathLike, *, repo_id: str | None = None, folder: str | os.PathLike | None = None
) -> None:
    """Offline checks of a card (object, text, or README path); raises ``ValueError`` listing every problem.

    Metadata: parses as ``ModelCardData``; ``library_name`` is ``vaebm_hub`` (``diffusers`` for remote code),
    ``pipeline_tag`` and the ``vaebm`` tag are set; ``license: other`` carries ``license_name`` and ``license_link``;
    ``base_model`` is a valid repo id. Body: every Python block compiles and, given ``repo_id``, loads that repository.
    Given ``folder`` (where the README lives), every relative image link exists there.
    """
    is_path = isinstance(card, os.PathLike) or (isinstance(card, str) and "\n" not in card)
    if is_path:
        folder = folder if folder is not None else Path(card).parent
        card = Path(card).read_text(encoding="utf-8")
    card = card if isinstance(card, ModelCard) else ModelCard(card)
    data, problems = card.data, []
    if data.library_name not in (LIBRARY_NAME, "diffusers"):
        problems.append(f"library_name is {data.library_name!r}, expected {LIBRARY_NAME!r}")
    if data.pipeline_tag != PIPELINE_TAG:
        problems.append(f"pipeline_tag is {data.pipeline_tag!r}, expected {PIPELINE_TAG!r}")
    if "vaebm" not in (data.tags or []):
        problems.append("tags lack 'vaebm'")
    if data.license == "other" and not (data.license_name and data.license_link):
        problems.append("license 'other' needs license_name and license_link")
    for base in [data.base_model] if isinstance(data.base_model, str) else data.base_model or []:
        try:
            validate_repo_id(base)
        except HFValidationError as error:
            problems.append(f"base_model {base!r} is not a repo id: {error}")
    blocks = CODE_BLOCK.findall(card.text)
    if not blocks:
        problems.append("the card has no ```python usage block")
    for block in blocks:
        try:
            ast.parse(block)
        except SyntaxError as error:
            problems.append(f"a python block does not compile: {error}")
    if repo_id is not None and not any(f'from_pretrained("{repo_id}"' in block for block in blocks):
        problems.append(f'no usage block calls from_pretrained("{repo_id}")')
    if folder is not None:
        links = [link for link in IMAGE_LINK.findall(card.text) if "://" not in link]
        problems += [f"linked image {link} is not in {folder}" for link in links if not Path(folder, link).is_file()]
    if problems:
        raise ValueError("invalid model card:\n- " + "\n- ".join(problems))

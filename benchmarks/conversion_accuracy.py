"""How close converted official checkpoints come to the official code's outputs: max absolute errors per quantity.

The tests (``tests/test_convert_*.py``, ``tests/test_potential.py``) assert the fixture README's tolerances; this
script reports the errors themselves, for the README and the release notes.

    python benchmarks/conversion_accuracy.py [--fixtures tests/fixtures/official]

Writes ``benchmarks/results/conversion_accuracy.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from vaebm_hub.convert import load_official_ebm, load_official_nvae
from vaebm_hub.pipelines.potential import potential_and_grad, vaebm_potential

RESULTS = Path(__file__).parent / "results"
NVAE_FIXTURES = ["nvae_A_cifar10_normal", "nvae_A_cifar10_normal_nf1", "nvae_B_mnist_bernoulli", "nvae_C_cifar10_dml"]
EBM_LAYOUTS = ["cifar32", "celeba64", "lsun64", "celeba256", "mnist"]
NUM_GROUPS = 4  # every NVAE fixture has four latent groups


def max_error(ours: torch.Tensor | list[torch.Tensor], theirs: torch.Tensor | list[torch.Tensor]) -> float:
    """Largest absolute difference over a tensor or a list of tensors."""
    if isinstance(ours, torch.Tensor):
        ours, theirs = [ours], [theirs]
    return max(float((a.detach() - b).abs().max()) for a, b in zip(ours, theirs, strict=True))


def nvae_errors(root: Path) -> dict[str, float]:
    vae = load_official_nvae(root / "checkpoint.pt")
    ref = load_file(root / "reference.safetensors")
    with torch.no_grad():
        prior = vae.decode_noise([ref[f"eps_z.{i}"] for i in range(NUM_GROUPS)], 1.0)
        log_prob = vae.output_distribution(prior.logits).log_prob(ref["x"])
        post = vae(ref["x"], posterior_noise=[ref[f"enc.eps_q.{i}"] for i in range(NUM_GROUPS)])
    return {
        "decoder logits": max_error(prior.logits, ref["sample.t1.0.logits"]),
        "latents z": max_error(prior.z, [ref[f"sample.t1.0.z.{i}"] for i in range(NUM_GROUPS)]),
        "log p(z) (summed)": max_error(prior.log_p_z, ref["sample.t1.0.log_p_total"]),
        "log p(x|z) per pixel": max_error(log_prob, ref["sample.t1.0.log_prob_x"]),
        "encoder log q (summed)": max_error(post.log_q, ref["enc.log_q"]),
        "encoder log p (summed)": max_error(post.log_p, ref["enc.log_p"]),
        "KL per group": max_error(post.kl_all, [ref[f"enc.kl_all.{i}"] for i in range(NUM_GROUPS)]),
    }


def ebm_errors(root: Path) -> dict[str, float]:
    model = load_official_ebm(root / "checkpoint.pth")
    ref = load_file(root / "reference.safetensors")
    x = ref["x"].clone().requires_grad_(True)
    energy = model(x)
    (grad_x,) = torch.autograd.grad(energy.sum(), x)
    return {"energy": max_error(energy, ref["energy"]), "dE/dx": max_error(grad_x, ref["grad_x"])}


def langevin_errors(fixtures: Path) -> dict[str, float]:
    vae = load_official_nvae(fixtures / "nvae_A_cifar10_normal" / "checkpoint.pt")
    ebm = load_official_ebm(fixtures / "ebm_cifar32" / "checkpoint.pth")
    ref = load_file(fixtures / "langevin_A_cifar32" / "reference.safetensors")
    eps = vae.merge_noise([ref[f"eps_z.{i}"] for i in range(NUM_GROUPS)], ref["eps_x"])
    with torch.no_grad():
        out = vaebm_potential(vae, ebm, eps, potential="official")
    _, grad, _ = potential_and_grad(vae, ebm, eps, potential="official")
    reference_grad = vae.merge_noise([ref[f"grad_eps_z.{i}"] for i in range(NUM_GROUPS)], ref["grad_eps_x"])
    return {
        "potential U (|U| ~ 4e3)": max_error(out.potential, ref["U"]),
        "dU/d eps": max_error(grad, reference_grad),
        "images": max_error(out.images, ref["neg_x"]),
    }


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = ["| fixture | quantity | max abs error |", "|---|---|---|"]
    for fixture, errors in results.items():
        lines += [f"| {fixture} | {name.replace('|', '∣')} | {value:.2e} |" for name, value in errors.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=Path(__file__).parents[1] / "tests/fixtures/official")
    args = parser.parse_args()
    results = {name: nvae_errors(args.fixtures / name) for name in NVAE_FIXTURES}
    results.update({f"ebm_{layout}": ebm_errors(args.fixtures / f"ebm_{layout}") for layout in EBM_LAYOUTS})
    results["langevin_A_cifar32 (official potential)"] = langevin_errors(args.fixtures)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conversion_accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (RESULTS / "conversion_accuracy.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

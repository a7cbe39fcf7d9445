"""``vaebm-hub``: the command line mirror of the Python API.

Verbs: ``convert`` (official NVAE/VAEBM checkpoints -> pipeline), ``sample`` (pipeline -> image grid), ``push``
(pipeline -> Hub repo), ``export-remote-code`` (pipeline -> a ``trust_remote_code`` flavour), ``train`` (the
Accelerate trainer; prefer ``accelerate launch examples/train.py`` for several processes), ``evaluate`` (pipeline ->
metrics.json, samples.png, energy_histogram.png).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .constants import DECODER_OUTPUTS


def _convert(args: argparse.Namespace) -> None:
    from .convert.pipeline import convert_official

    convert_official(
        args.nvae,
        args.output,
        ebm_checkpoint=args.ebm,
        ebm_layout=args.ebm_layout,
        dataset=args.dataset,
        potential=args.potential,
    )
    print(f"Saved the converted pipeline to {args.output}. Load it with:")
    print(f'    VAEBMPipeline.from_pretrained("{args.output}")')


def _sample(args: argparse.Namespace) -> None:
    import torch

    from .figures import image_grid
    from .pipelines import VAEBMPipeline

    device = checked_device(args.device)  # before loading: fail fast
    pipe = VAEBMPipeline.from_pretrained(args.model, variant=args.variant)
    pipe = pipe.to(device=device, dtype=getattr(torch, args.dtype))  # the chain itself stays float32
    out = pipe(
        batch_size=args.num_images,
        num_inference_steps=args.steps,
        step_size=args.step_size,
        temperature=args.temperature,
        potential=args.potential,
        decoder_output=args.decoder_output,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="pt",
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    image_grid(out.images, scale=args.upscale).save(args.output)
    print(f"Wrote {len(out.images)} samples to {args.output}")


def _push(args: argparse.Namespace) -> None:
    from .hub import push_pipeline

    url = push_pipeline(args.model, args.repo_id, token=args.token, private=args.private, variant=args.variant)
    print(f"Pushed {args.model} to {url}")


def _export(args: argparse.Namespace) -> None:
    from .hub import export_remote_code

    path = export_remote_code(args.model, args.output)
    print(f"Wrote a trust_remote_code flavour to {path}")


def _train(args: argparse.Namespace, rest: list[str]) -> None:
    from .training import main as train_main

    train_main(rest)


def _names(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]`` (``""`` -> ``[]``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _steps(text: str) -> list[int]:
    try:
        return [int(item) for item in _names(text)]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,10,30, got {text!r}") from error


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_pipeline, format_report
    from .pipelines import VAEBMPipeline

    if (args.dataset is None) == (args.train_data_dir is None):
        raise UserError("pass --dataset (a built-in) or --train_data_dir (a folder of images), one of the two")
    pipe = VAEBMPipeline.from_pretrained(args.model).to(checked_device(args.device))
    pipe.set_progress_bar_config(disable=True)
    if args.train_data_dir is not None:
        _evaluate_folder(args, pipe)
        return
    options = {
        "num_samples": args.num_samples,
        "chain_lengths": args.chain_lengths,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }  # unset flags keep evaluate_pipeline's defaults
    result = evaluate_pipeline(
        pipe,
        args.dataset,
        ood_set_names=args.ood_sets,
        data_root=args.cache_dir,
        inception_weights=args.inception_weights,
        output_dir=args.output_dir,
        **{name: value for name, value in options.items() if value is not None},
    )
    print(format_report(result))
    print(f"Wrote metrics.json, samples.png and energy_histogram.png to {args.output_dir}")


def _evaluate_folder(args: argparse.Namespace, pipe) -> None:
    import numpy as np

    from .data import build_train_dataset
    from .evaluation.folder import evaluate_image_folder

    channels, size, _ = pipe.vae.data_shape
    dataset = build_train_dataset(None, args.train_data_dir, resolution=size, channels=channels, center_crop=True)
    images = np.stack([dataset[i].numpy() for i in range(len(dataset))])
    options = {"num_samples": args.num_samples, "chain_lengths": args.chain_lengths, "seed": args.seed,
               "batch_size": args.batch_size}  # fmt: skip
    result = evaluate_image_folder(
        pipe, images, output_dir=args.output_dir, **{k: v for k, v in options.items() if v is not None}
    )
    for row in result["rows"]:
        print(
            f"K={row['langevin_steps']:>4}  FD_rand {row['fd_rand']:.3f} (floor {row['fd_rand_floor']:.3f})  "
            f"precision {row['precision_rand']:.3f}  recall {row['recall_rand']:.3f}  E {row['energy_mean']:.2f}"
        )
    print(f"Wrote metrics.json, samples.png and energy_histogram.png to {args.output_dir}")


def _add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num_threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: torch's). Small models on a busy CPU run fastest with 1.",
    )


class UserError(ValueError):
    """A mistake in the command line, reported as one line (no traceback)."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse reports anything else as a one-line usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def checked_device(name: str):
    """``torch.device(name)``, refused with the fix when this torch build or machine cannot use it."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"--device {name!r} is not a torch device ({error}); use e.g. cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available to this torch build or machine; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


DTYPES = ("float32", "float16", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="vaebm-hub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"vaebm-hub {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also VAEBM_HUB_DEBUG=1)"
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    convert = verbs.add_parser("convert", help="convert official NVAE (+ VAEBM EBM) checkpoints to a pipeline")
    convert.add_argument("--nvae", required=True, help="official NVAE checkpoint (.pt with state_dict and args)")
    convert.add_argument("--ebm", help="official VAEBM energy checkpoint (.pth with 'model')")
    convert.add_argument("--ebm_layout", help="EBM layout if it cannot be inferred (cifar32, celeba64, ...)")
    convert.add_argument("--dataset", help="paper preset for the sampler settings (default: the NVAE's dataset)")
    convert.add_argument("--potential", choices=["exact", "official"], help="Langevin potential to save")
    convert.add_argument("--output", required=True, help="output folder for the pipeline")
    convert.set_defaults(func=_convert)

    sample = verbs.add_parser("sample", help="sample a saved pipeline into an image grid")
    sample.add_argument("model", help="pipeline folder or Hub id")
    sample.add_argument("--num_images", type=int, default=16, help="how many samples the grid shows")
    sample.add_argument("--steps", type=int, default=None, help="Langevin steps (default: the scheduler's)")
    sample.add_argument("--step_size", type=float, default=None, help="Langevin step size (default: the scheduler's)")
    sample.add_argument("--temperature", type=float, default=1.0, help="the VAE prior's temperature (1 = the paper)")
    sample.add_argument(
        "--potential", choices=["exact", "official"], default=None, help="Langevin potential (default: the saved one)"
    )
    sample.add_argument(
        "--decoder_output",
        choices=DECODER_OUTPUTS,
        default=None,
        help="the images: decoder means (VAEBM) or decoder samples at the chains' final state (default: saved one)",
    )
    sample.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator of every draw")
    sample.add_argument("--dtype", choices=DTYPES, default="float32", help="the networks' precision")
    sample.add_argument("--variant", default=None, help="load weights saved as a variant (e.g. fp16)")
    sample.add_argument("--upscale", type=positive_int, default=1, help="nearest-neighbour upscaling of each image")
    sample.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    _add_threads_flag(sample)
    sample.add_argument("--output", default="samples.png", help="PNG file of the grid")
    sample.set_defaults(func=_sample)

    push = verbs.add_parser("push", help="upload a saved pipeline (safetensors, configs, card) to the Hub")
    push.add_argument("model", help="pipeline folder")
    push.add_argument("--repo_id", required=True, help="Hub repository, e.g. your-name/vaebm-digits")
    push.add_argument("--token", default=None, help="defaults to HF_TOKEN or the stored login")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--variant", default=None, help="push the weights saved as this variant (e.g. fp16)")
    push.set_defaults(func=_push)

    export = verbs.add_parser("export-remote-code", help="write a self-contained trust_remote_code flavour")
    export.add_argument("model", help="pipeline folder")
    export.add_argument("output", help="output folder")
    export.set_defaults(func=_export)

    evaluate = verbs.add_parser("evaluate", help="evaluate a pipeline on a built-in dataset's test split")
    evaluate.add_argument("model", help="pipeline folder or Hub id")
    evaluate.add_argument("--dataset", help="built-in dataset the pipeline models (digits, mnist, ...)")
    evaluate.add_argument(
        "--train_data_dir", help="or a folder of images: distances in a fixed random embedding (no classifier)"
    )
    evaluate.add_argument("--output_dir", required=True, help="folder for metrics.json and the figures")
    evaluate.add_argument("--num_samples", type=int, help="samples per chain length")
    evaluate.add_argument("--chain_lengths", type=_steps, help="Langevin steps, e.g. 0,10,30 (0 = the VAE)")
    evaluate.add_argument("--ood_sets", type=_names, help="comma-separated OOD sets (default: all; '' for none)")
    evaluate.add_argument("--seed", type=int, help="seed of the samples (the reference sets do not depend on it)")
    evaluate.add_argument("--batch_size", type=int, help="sampling batch size")
    evaluate.add_argument("--cache_dir", help="cache folder of the evaluation classifiers")
    evaluate.add_argument("--inception_weights", help="local torch-fidelity InceptionV3 weights file: adds real FID")
    evaluate.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    _add_threads_flag(evaluate)
    evaluate.set_defaults(func=_evaluate)

    train = verbs.add_parser("train", help="run the trainer (flags as examples/train.py)", add_help=False)
    train.set_defaults(func=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run a verb; a user error (bad value, missing file, offline Hub, ...) prints one line to stderr and exits 2,
    with the full traceback under ``--debug`` or ``VAEBM_HUB_DEBUG=1``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv or os.environ.get("VAEBM_HUB_DEBUG", "") not in ("", "0")
    try:
        if argv[:1] == ["train"] or argv[:2] == ["--debug", "train"]:
            position = argv.index("train")
            args = parser.parse_args(argv[: position + 1])
            args.func(args, argv[position + 1 :])
            return
        args = parser.parse_args(argv)
        if getattr(args, "num_threads", None):
            import torch

            torch.set_num_threads(args.num_threads)
        args.func(args)
    except (ValueError, OSError, FloatingPointError, ImportError, TypeError) as error:
        if debug:
            raise
        print(f"vaebm-hub: error: {error}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

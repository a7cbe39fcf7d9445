"""``vaebm-hub``: the command line mirror of the Python API.

Verbs: ``convert`` (official NVAE/VAEBM checkpoints -> pipeline), ``sample`` (pipeline -> image grid), ``push``
(pipeline -> Hub repo), ``export-remote-code`` (pipeline -> a ``trust_remote_code`` flavour), ``train`` (the
Accelerate trainer; prefer ``accelerate launch examples/train.py`` for several processes), ``evaluate`` (pipeline ->
metrics.json, samples.png, energy_histogram.png).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


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

    pipe = VAEBMPipeline.from_pretrained(args.model).to(args.device)
    out = pipe(
        batch_size=args.num_images,
        num_inference_steps=args.steps,
        step_size=args.step_size,
        temperature=args.temperature,
        potential=args.potential,
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

    pipe = VAEBMPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
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


def _add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num_threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's). Small models on a busy CPU run fastest with 1.",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaebm-hub", description=__doc__.split("\n\n")[0])
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
    sample.add_argument("--num_images", type=int, default=16)
    sample.add_argument("--steps", type=int, default=None, help="Langevin steps (default: the scheduler's)")
    sample.add_argument("--step_size", type=float, default=None)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--potential", choices=["exact", "official"], default=None)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--upscale", type=int, default=1, help="nearest-neighbour upscaling of each image")
    sample.add_argument("--device", default="cpu")
    _add_threads_flag(sample)
    sample.add_argument("--output", default="samples.png")
    sample.set_defaults(func=_sample)

    push = verbs.add_parser("push", help="upload a saved pipeline (safetensors, configs, card) to the Hub")
    push.add_argument("model", help="pipeline folder")
    push.add_argument("--repo_id", required=True)
    push.add_argument("--token", default=None, help="defaults to HF_TOKEN or the stored login")
    push.add_argument("--private", action="store_true")
    push.add_argument("--variant", default=None)
    push.set_defaults(func=_push)

    export = verbs.add_parser("export-remote-code", help="write a self-contained trust_remote_code flavour")
    export.add_argument("model", help="pipeline folder")
    export.add_argument("output", help="output folder")
    export.set_defaults(func=_export)

    evaluate = verbs.add_parser("evaluate", help="evaluate a pipeline on a built-in dataset's test split")
    evaluate.add_argument("model", help="pipeline folder or Hub id")
    evaluate.add_argument("--dataset", required=True, help="built-in dataset the pipeline models (digits, ...)")
    evaluate.add_argument("--output_dir", required=True, help="folder for metrics.json and the figures")
    evaluate.add_argument("--num_samples", type=int, help="samples per chain length")
    evaluate.add_argument("--chain_lengths", type=_steps, help="Langevin steps, e.g. 0,10,30 (0 = the VAE)")
    evaluate.add_argument("--ood_sets", type=_names, help="comma-separated OOD sets (default: all; '' for none)")
    evaluate.add_argument("--seed", type=int)
    evaluate.add_argument("--batch_size", type=int)
    evaluate.add_argument("--cache_dir", help="cache folder of the evaluation classifiers")
    evaluate.add_argument("--inception_weights", help="local torch-fidelity InceptionV3 weights file: adds real FID")
    evaluate.add_argument("--device", default="cpu")
    _add_threads_flag(evaluate)
    evaluate.set_defaults(func=_evaluate)

    train = verbs.add_parser("train", help="run the trainer (flags as examples/train.py)", add_help=False)
    train.set_defaults(func=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["train"]:
        args = parser.parse_args(argv[:1])
        args.func(args, argv[1:])
        return
    args = parser.parse_args(argv)
    if getattr(args, "num_threads", None):
        import torch

        torch.set_num_threads(args.num_threads)
    args.func(args)


if __name__ == "__main__":
    main()

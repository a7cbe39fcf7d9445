"""``vaebm-hub``: the command line mirror of the Python API.

Verbs: ``convert`` (official NVAE/VAEBM checkpoints -> pipeline), ``sample`` (pipeline -> image grid), ``push``
(pipeline -> Hub repo), ``export-remote-code`` (pipeline -> a ``trust_remote_code`` flavour), ``train`` (the
Accelerate trainer; prefer ``accelerate launch examples/train.py`` for several processes).
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
    from diffusers.utils import make_image_grid

    from .pipelines import VAEBMPipeline

    pipe = VAEBMPipeline.from_pretrained(args.model).to(args.device)
    out = pipe(
        batch_size=args.num_images,
        num_inference_steps=args.steps,
        step_size=args.step_size,
        temperature=args.temperature,
        potential=args.potential,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="pil",
    )
    images = [im.resize((im.width * args.upscale, im.height * args.upscale), 0) for im in out.images]
    rows = max(1, int(len(images) ** 0.5))
    while len(images) % rows:
        rows -= 1
    grid = make_image_grid(images, rows=rows, cols=len(images) // rows)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output)
    print(f"Wrote {len(images)} samples to {args.output}")


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
    args.func(args)


if __name__ == "__main__":
    main()

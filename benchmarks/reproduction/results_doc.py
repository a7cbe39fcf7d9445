"""``docs/results.md`` from the claims' JSON results: one table per claim, its target and whether it was met."""

from __future__ import annotations

import os
from pathlib import Path

from .claim_gain import verdict_summary

DEFAULT_COMMAND = "make reproduce"


def _f(value, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _train_time(name: str, record: dict) -> str:
    seconds = "?" if record["seconds"] is None else f"{record['seconds']:.0f} s"
    return f"{name} {seconds}{'*' if record['from_cache'] else ''}"


def _from_scratch(meta: dict) -> str:
    """What the command takes from scratch: the measured wall time when nothing came from the cache, else an
    estimate from above, the wall time plus the cached runs' recorded training shared among the worker processes
    (from scratch that training would partly fill the time a worker waits for the longest run)."""
    cached = sum(r["seconds"] or 0 for r in meta["train_seconds"].values() if r["from_cache"])
    if not cached:
        return f"This was from scratch (training + evaluation): {meta['wall_seconds'] / 60:.0f} min."
    workers = meta.get("workers", 2)
    total = (meta["wall_seconds"] + cached / workers) / 60
    return (
        f"From scratch (training + evaluation) the command would take at most about {total:.0f} min: this wall "
        f"time plus the cached runs' training shared among the {workers} workers, an estimate from above, since from "
        "scratch that training partly fills the time a worker waits for the longest run."
    )


def _met(result: dict) -> str:
    return "**met**" if result["target_met"] else "**not met**"


def _figure(result_dir: Path, docs_dir: Path, relative: str, caption: str) -> str:
    path = Path(result_dir) / relative
    if not path.is_file():
        return ""
    return f"![{caption}]({os.path.relpath(path, docs_dir)})\n"


def _draws(d: dict) -> str:
    """How claim 1's rows for one dataset were sampled."""
    n = d.get("num_draws", 1)
    if n == 1:
        return f"{d['num_samples']} samples per row, same initial noise"
    return (
        f"each row the mean over {n} draws of {d['num_samples']} samples, each draw from its own noise, the same for "
        "every K within a draw"
    )


def _draw_verdicts(d: dict) -> str:
    """Each draw's own verdict, where the rows are means over several."""
    checks = d.get("draw_verdicts", [])
    if len(checks) < 2:
        return ""
    longest = d["rows"][-1]["langevin_steps"]
    parts = []
    for space in checks[0]["spaces"]:
        closed = ", ".join(format(c["spaces"][space]["gap_closed"], ".2f") for c in checks)
        no_worse = sum(c["spaces"][space]["longest_no_worse"] for c in checks)
        parts.append(f"{space}: gap closed {closed}, K = {longest} no worse in {no_worse}")
    per_space = "; ".join(parts)
    return f" Draw by draw the target is met in {sum(c['met'] for c in checks)} of {len(checks)} ({per_space})."


def _gain(r: dict, result_dir: Path, docs_dir: Path) -> list[str]:
    lines = []
    for dataset, d in r["datasets"].items():
        v = d["verdict"]
        spaces = verdict_summary(v, d["rows"][-1]["langevin_steps"], bold=True)
        lines += [
            f"**{dataset}** ({_draws(d)}; evaluation classifier test accuracy {d['classifier_test_accuracy']:.3f}). "
            f"VAE samples classified with confidence > 0.9: **{v['vae_confident_fraction']:.2f}**. {spaces}. Target "
            f"{'met' if v['met'] else 'not met'}.{_draw_verdicts(d)}",
            "",
            "| model | K | FD_clf | floor | FD_clf − floor | FD_rand | floor | FD_rand − floor | precision | recall | "
            "conf > 0.9 | class KL | sampling s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in d["rows"]:
            lines.append(
                f"| {'VAE' if row['langevin_steps'] == 0 else 'VAEBM'} | {row['langevin_steps']} | "
                f"{_f(row['fd_clf'])} | {_f(row['fd_floor'])} | {_f(row['fd_minus_floor'])} | "
                f"{_f(row['fd_rand'], '.3f')} | {_f(row['fd_rand_floor'], '.3f')} | "
                f"{_f(row['fd_rand_minus_floor'], '.3f')} | {_f(row['precision'], '.3f')} | "
                f"{_f(row['recall'], '.3f')} | {_f(row['confident_fraction'], '.3f')} | "
                f"{_f(row.get('class_kl'), '.3f')} | {_f(row['sampling_seconds'], '.1f')} |"
            )
        lines += ["", _figure(result_dir, docs_dir, d["figure"], f"{dataset}: real | VAE | VAEBM samples")]
    return lines


def _sampling_space(r: dict, result_dir: Path, docs_dir: Path) -> list[str]:
    lines = [
        f"{r['dataset']}, {r['num_samples']} samples per row; both EBMs trained on the same frozen VAE. The eps-space "
        "rows are the pipeline's images, and the x-space chains start from the same images of the same noise (for "
        '`digits` the decoder\'s samples, `decoder_output="sample"`, in training and sampling alike), so both K = 0 '
        "rows are the VAE's.",
        "",
        "| sampling space | K | FD_clf | FD_clf − floor | FD_rand − floor | precision | recall | sampling s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['space']} | {row['langevin_steps']} | {_f(row['fd_clf'])} | {_f(row['fd_minus_floor'])} | "
            f"{_f(row['fd_rand_minus_floor'], '.3f')} | {_f(row['precision'], '.3f')} | {_f(row['recall'], '.3f')} | "
            f"{_f(row['sampling_seconds'], '.1f')} |"
        )
    better = ", ".join(f"K={k}: {'yes' if v else 'no'}" for k, v in r["eps_better_at_k"].items())
    return lines + ["", f"eps-space better in both feature spaces: {better}."]


def _modes(r: dict, result_dir: Path, docs_dir: Path) -> list[str]:
    lines = [
        f"Gate: {r['gate']}. Paper (StackedMNIST): {r['paper']['modes']} modes, reverse KL "
        f"{r['paper']['reverse_kl']}. The target is judged on {r['dataset']}, with the reverse KL bias-corrected "
        "(Miller–Madow: the plug-in KL less (modes hit − 1) / (2 · samples kept); the plug-in KL of a few thousand "
        "samples over 1000 modes is biased up by about 0.12). The channels' class mix is the sum of each channel's "
        "plug-in KL to uniform over its 10 digits; the plug-in reverse KL is that sum plus the channels' dependence "
        "and nearly all of the sample-size bias (the corrected KL less the class mix is the dependence, within about "
        "0.004 here).",
    ]
    for dataset, d in r["datasets"].items():
        lines += [
            "",
            f"**{dataset}**, {d['num_samples']} samples per row.",
            "",
            "| samples | K | modes (of 1000) | reverse KL (plug-in) | reverse KL (corrected) | channels' class mix "
            "(marginal KL) | kept fraction | FD_clf − floor | FD_rand − floor | precision | recall |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, row in [("real test stacks", d["real_stacks"]), *[(None, x) for x in d["rows"]]]:
            name = label or ("VAE" if row["langevin_steps"] == 0 else "VAEBM")
            k = "–" if label else row["langevin_steps"]
            lines.append(
                f"| {name} | {k} | {row['modes']} | {_f(row['reverse_kl'], '.3f')} | "
                f"{_f(row.get('reverse_kl_corrected'), '.3f')} | {_f(row.get('marginal_kl'), '.3f')} | "
                f"{_f(row['kept_fraction'], '.3f')} | "
                f"{_f(row['fd_minus_floor'])} | "
                f"{_f(row.get('fd_rand_minus_floor'), '.3f')} | {_f(row['precision'], '.3f')} | "
                f"{_f(row['recall'], '.3f')} |"
            )
        if "figure" in d:
            lines += ["", _figure(result_dir, docs_dir, d["figure"], f"{dataset}: real | VAE | VAEBM samples")]
    return lines


def _ood(r: dict, result_dir: Path, docs_dir: Path) -> list[str]:
    lines = [f"−E alone on pixel-shuffled MNIST: **{r['shuffled_energy_auroc']:.3f}** (target >= 0.9).", ""]
    for dataset, d in r["datasets"].items():
        lines += [
            f"**{dataset}** in-distribution ({d['num_in_distribution']} test images) against each OOD set "
            f"(as many images; the near set has at most its test split's size). log h better than the ELBO on "
            f"{d['better']} of {d['unsaturated']} unsaturated sets, never worse: {'yes' if d['holds'] else 'no'}.",
            "",
            "| OOD set | VAEBM log h | −E alone | VAE ELBO | log h − ELBO | log h vs ELBO |",
            "|---|---|---|---|---|---|",
        ]
        for name, scores in d["auroc"].items():
            lines.append(
                f"| {name} | {_f(scores['log_h'], '.3f')} | {_f(scores['energy'], '.3f')} | "
                f"{_f(scores['vae_elbo'], '.3f')} | {scores['log_h'] - scores['vae_elbo']:+.3f} | "
                f"{d['outcome'][name]} |"
            )
        lines.append("")
    return lines


def _toy(r: dict, result_dir: Path, docs_dir: Path) -> list[str]:
    true = r["true_samples"]
    lines = [
        f"{r['num_samples']} samples per row.",
        "",
        "| samples | K | within 3σ | modes (of 25) | reverse KL | mean log p_true |",
        "|---|---|---|---|---|---|",
        f"| true mixture | – | {_f(true['high_quality_fraction'], '.3f')} | {true['modes_covered']} | "
        f"{_f(true['reverse_kl'], '.3f')} | {_f(true['mean_log_density'])} |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {'VAE' if row['langevin_steps'] == 0 else 'VAEBM'} | {row['langevin_steps']} | "
            f"{_f(row['high_quality_fraction'], '.3f')} | {row['modes_covered']} | {_f(row['reverse_kl'], '.3f')} | "
            f"{_f(row['mean_log_density'])} |"
        )
    return lines + ["", _figure(result_dir, docs_dir, r["figure"], "25-Gaussians: VAE vs VAEBM samples")]


def minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def _wall_time(r: dict, result_dir: Path, docs_dir: Path) -> list[str]:
    if r.get("skipped"):
        return ["Not measured in a --fast run."]
    row = "met" if r["mnist_row_met"] else "not met"
    direct = r.get("direct")
    if direct is None:
        return [
            "Training time of the `mnist` run (the default command, one torch thread, the machine shared with another "
            f"run; `benchmarks/default_command.py`'s result: {r.get('direct_result', 'missing')}): "
            f"**{minutes(r['seconds'])}**; claim 1 on MNIST {row}."
        ]
    stages = f"stage 1 {minutes(direct['stage_1_seconds'])}, stage 2 {minutes(direct['stage_2_seconds'])}"
    summary = verdict_summary(direct["verdict"], direct["rows"][-1]["langevin_steps"])
    return [
        f"`benchmarks/default_command.py`: `{direct['command']}` on its own after `accelerate config default` "
        f"({direct['machine']}, {direct['threads']} torch threads, torch {direct['torch']}): {stages}, "
        f"**{minutes(r['seconds'])}** in all. Its pipeline, scored as claim 1 scores MNIST: {summary}; claim 1's "
        f"MNIST row {row} (`benchmarks/results/default_command.md`).",
    ]


# What was scaled down and the experiments behind the presets: hand-written, embedded in the generated report.
EXPERIMENT_LOG = Path(__file__).with_name("experiment_log.md")

SECTIONS = {1: _gain, 2: _sampling_space, 3: _modes, 4: _ood, 5: _toy, 6: _wall_time}


def _earlier_commands(results: dict[int, dict], command: str) -> list[str]:
    """A paragraph naming the commands behind the claims that ``command`` (the last run's) did not produce."""
    by_command: dict[str, list[int]] = {}
    for claim, r in sorted(results.items()):
        if r.get("command") != command:
            by_command.setdefault(r.get("command") or "an earlier command (not recorded)", []).append(claim)
    if not by_command:
        return []
    sources = "; ".join(
        f"claim{'s' if len(c) > 1 else ''} {', '.join(map(str, c))}: `{cmd}`" for cmd, c in by_command.items()
    )
    return ["", f"The other claims' results are those of other commands, kept in their JSON files ({sources})."]


def results_markdown(results: dict[int, dict], meta: dict, result_dir: Path, docs_dir: Path) -> str:
    """The report; ``result_dir`` holds the figures, linked relative to ``docs_dir``."""
    command = meta["command"] or DEFAULT_COMMAND
    lines = [
        "# Reproduction of VAEBM's claims at CPU scale",
        "",
        "Produced by:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Wall time of this command: {minutes(meta['wall_seconds'])} ({meta['machine']}). Training runs and claim "
        f"evaluations are tasks in {meta.get('workers', 2)} worker processes, an evaluation starting once the runs "
        "it reads are trained (training first); training, on one torch thread per run: "
        + ", ".join(_train_time(k, v) for k, v in meta["train_seconds"].items())
        + " (* = loaded from the cache in `outputs/reproduce/`; the time is that of the run that trained it). Every "
        "run uses the package trainer (`vaebm_hub.training.main`) with seed 0; the runs are listed in "
        "`benchmarks/reproduction/runs.py`. "
        + (
            "Each run's time is an upper bound: it shared the machine with the other workers' tasks. "
            if meta.get("workers", 2) > 1
            else ""
        )
        + _from_scratch(meta),
        *_earlier_commands(results, command),
        "",
        "FD_clf is the Fréchet distance in the features of a small classifier trained on the same dataset — **not "
        "FID** (no Inception weights exist offline). It is always shown beside its floor, real vs real images at the "
        "same sample size; FD_clf − floor ≈ 0 means as good as real data. Class KL is the KL from the samples' "
        "histogram of classes (the classifier's top class) to the test split's: 0 when a model draws each digit as "
        "often as the data.",
        "",
        "| claim | target | met |",
        "|---|---|---|",
    ]
    for claim, r in sorted(results.items()):
        lines.append(f"| {claim}. {r['title']} | {r['target']} | {_met(r)} |")
    lines += ["", EXPERIMENT_LOG.read_text(encoding="utf-8").rstrip()]
    for claim, r in sorted(results.items()):
        lines += [
            "",
            f"## {claim}. {r['title']}",
            "",
            f"Target: {r['target']} — {_met(r)}. ({r['wall_seconds']:.0f} s, `reproduce_{claim}.json`)",
            "",
            *SECTIONS[claim](r, result_dir, docs_dir),
        ]
    return "\n".join(lines).rstrip() + "\n"

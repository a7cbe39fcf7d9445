"""``kill -9`` and resume: does a run killed at any moment and resumed with ``--resume_from_checkpoint latest`` end
with exactly the weights of a run that was never interrupted?

A tiny ``--stage all`` digits run on a one-scale VAE (both stages, a checkpoint every few steps, EMA, spectral
regularisation, random flips, gradient accumulation, the replay buffer) is trained once without interruption. Then,
``--trials`` times (default 10), the same command is started in a fresh output folder and killed with SIGKILL from
outside, in one of three seeded ways that cycle:

* ``timer``: after a random delay between the first checkpoint's appearance and the end of the uninterrupted run;
* ``mid-write``: as soon as the temporary folder of a randomly chosen checkpoint appears the process is frozen
  (SIGSTOP), checked to be writing it (temporary folder there, final one not yet), and killed;
* ``write+delay``: a random 0-40 ms after a randomly chosen checkpoint's temporary folder appears (mid-write or
  just after the rename).

Every third trial also kills the first resumed process (a kill while resuming). The command then reruns, unkilled,
until it exits. Reported per trial and in total:

* ``kills``: SIGKILLs that landed (a process that ended before its kill is not counted; the trial draws again);
* ``corrupt``: resumes that exit with an error, or that report skipping a checkpoint that does not verify
  (``[resume] skipping ...``): with atomic checkpoint writes neither should ever happen;
* ``mismatches``: trials whose final ``vae/`` and ``ebm/`` safetensors differ from the uninterrupted run's in any
  tensor's dtype, shape or bytes (compared bitwise, without torch);
* leftover ``.tmp-*`` folders after the run finished.

    python benchmarks/kill_resume.py [--trials 10] [--seed 0] [--src DIR]

``--src`` (default: the repo's ``src``) is prepended to ``PYTHONPATH``. Writes ``benchmarks/results/kill_resume.json``
and ``kill_resume.md``. Runs one training process at a time with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN_SCRIPT = ROOT / "examples" / "train.py"
VAE_STEPS, EBM_STEPS, EVERY = 12, 12, 2
# One latent scale: resuming a two-scale VAE's stage 2 ends within float32 rounding (~1e-8) of the straight run on some
# CPUs, not bitwise (tests/test_training.py), and this benchmark compares bitwise.
VAE_CONFIG = Path(__file__).resolve().parent / "kill_resume_vae.json"
RUN_ARGS = [
    "--dataset_name", "digits", "--vae_config", str(VAE_CONFIG), "--stage", "all", "--train_batch_size", "8",
    "--ebm_n_channel", "4",
    "--langevin_steps", "2", "--sample_langevin_steps", "2", "--num_sample_images", "4", "--data_init_batches", "1",
    "--report_to", "none", "--readjust_bn_batches", "2", "--no-channels_last",
    "--vae_max_train_steps", str(VAE_STEPS), "--ebm_max_train_steps", str(EBM_STEPS),
    "--checkpointing_steps", str(EVERY), "--checkpoints_total_limit", "3", "--use_ema",
    "--vae_spectral_reg_coeff", "0.01", "--random_flip", "--replay_anneal_steps", "1",
    "--gradient_accumulation_steps", "2",
]  # fmt: skip
CHECKPOINT_STEPS = list(range(EVERY, VAE_STEPS + EBM_STEPS + 1, EVERY))
MODES = ("timer", "mid-write", "write+delay")
TIMEOUT_S = 300
POLL_S = 0.0005


def env(src: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def command(output_dir: Path) -> list[str]:
    return [sys.executable, str(TRAIN_SCRIPT), *RUN_ARGS, "--output_dir", str(output_dir)]


def resume_command(output_dir: Path) -> list[str]:
    return [*command(output_dir), "--resume_from_checkpoint", "latest"]


def checkpoints(output_dir: Path) -> list[int]:
    if not output_dir.is_dir():
        return []
    steps = [p.name.removeprefix("checkpoint-") for p in output_dir.glob("checkpoint-*")]
    return sorted(int(s) for s in steps if s.isdigit())


def temporaries(output_dir: Path) -> list[str]:
    return sorted(p.name for p in output_dir.glob(".tmp-*")) if output_dir.is_dir() else []


def run_to_end(cmd: list[str], environment: dict[str, str], log: Path) -> tuple[int, float]:
    start = time.monotonic()
    with log.open("a") as handle:
        returncode = subprocess.run(cmd, env=environment, stdout=handle, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    return returncode.returncode, time.monotonic() - start


def straight_run(output_dir: Path, environment: dict[str, str], log: Path) -> dict:
    """The uninterrupted run, timed: when the first checkpoint's temporary folder appears and when it ends."""
    start = time.monotonic()
    first = None
    with log.open("w") as handle:
        process = subprocess.Popen(command(output_dir), env=environment, stdout=handle, stderr=subprocess.STDOUT)
        while process.poll() is None:
            if first is None and (temporaries(output_dir) or checkpoints(output_dir)):
                first = time.monotonic() - start
            time.sleep(0.005)
    if process.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed ({process.returncode}):\n{log.read_text()[-3000:]}")
    return {"seconds": time.monotonic() - start, "first_checkpoint_s": first, "checkpoints": checkpoints(output_dir)}


def kill(process: subprocess.Popen, output_dir: Path, mode: str, rng: random.Random, window: tuple[float, float]):
    """Kill ``process`` in ``mode``; what the folder held at that moment, or ``None`` if the process ended first."""
    start = time.monotonic()
    done = max(checkpoints(output_dir), default=0)  # a resumed process writes only later checkpoints
    target = rng.choice([step for step in CHECKPOINT_STEPS if step > done] or CHECKPOINT_STEPS[-1:])
    plan: dict = {"mode": mode}
    if mode == "timer":
        plan["delay_s"] = round(rng.uniform(*window), 3)
    else:
        plan["checkpoint"] = f"checkpoint-{target}"
        plan["delay_ms"] = round(rng.uniform(0, 40), 1) if mode == "write+delay" else 0.0
    tmp, final = output_dir / f".tmp-checkpoint-{target}", output_dir / f"checkpoint-{target}"
    while process.poll() is None and time.monotonic() - start < TIMEOUT_S:
        if mode == "timer" and time.monotonic() - start >= plan["delay_s"]:
            break
        if mode != "timer" and tmp.is_dir():
            if mode == "mid-write":
                process.send_signal(signal.SIGSTOP)
                plan["frozen_mid_write"] = tmp.is_dir() and not final.exists()
            else:
                time.sleep(plan["delay_ms"] / 1000)
            break
        if mode != "timer" and final.is_dir():  # the write was missed between two polls: kill at once
            plan["missed_the_write"] = True
            break
        time.sleep(POLL_S)
    if process.poll() is not None:
        return None
    process.kill()
    process.wait()
    plan.update(
        at_s=round(time.monotonic() - start, 3),
        checkpoints=checkpoints(output_dir),
        temporaries=temporaries(output_dir),
    )
    return plan


def read_safetensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    """``{name: (dtype, shape, raw bytes)}`` of a safetensors file (the format: an 8-byte header length, a JSON
    header of dtype/shape/offsets, then the data)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    return {
        name: (entry["dtype"], entry["shape"], body[entry["data_offsets"][0] : entry["data_offsets"][1]])
        for name, entry in header.items()
        if name != "__metadata__"
    }


def compare(a: Path, b: Path) -> list[str]:
    """Tensors that differ (bitwise) between the ``vae/`` and ``ebm/`` weights of two pipeline folders."""
    different = []
    for part in ("vae", "ebm"):
        files_a, files_b = sorted((a / part).glob("*.safetensors")), sorted((b / part).glob("*.safetensors"))
        if [f.name for f in files_a] != [f.name for f in files_b] or not files_a:
            different.append(f"{part}/: files {[f.name for f in files_b]} vs {[f.name for f in files_a]}")
            continue
        for fa, fb in zip(files_a, files_b):
            ta, tb = read_safetensors(fa), read_safetensors(fb)
            different += [f"{part}/{k}" for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
    return different


def trial(index: int, work: Path, environment: dict[str, str], rng: random.Random, window, reference: Path) -> dict:
    output_dir = work / f"trial-{index:02d}"
    log = work / f"trial-{index:02d}.log"
    log.write_text("")
    mode = MODES[index % len(MODES)]
    kills_wanted = 2 if index % 3 == 2 else 1  # every third trial also kills the first resumed process
    record: dict = {"trial": index, "kills": [], "resumes": 0, "corrupt": [], "error": None}
    while len(record["kills"]) < kills_wanted:
        with log.open("a") as handle:
            process = subprocess.Popen(resume_command(output_dir), env=environment, stdout=handle, stderr=handle)
            killed = kill(process, output_dir, mode if not record["kills"] else "write+delay", rng, window)
        if killed is None:  # it finished first: this draw did not kill anything
            record.setdefault("ended_before_kill", 0)
            record["ended_before_kill"] += 1
            if record["ended_before_kill"] > 3:
                break
            shutil.rmtree(output_dir, ignore_errors=True)
            record["kills"] = []
            continue
        record["kills"].append(killed)
    mark = log.stat().st_size
    for _ in range(3):  # resume until the run finishes (a failed resume is a corrupt checkpoint)
        returncode, _seconds = run_to_end(resume_command(output_dir), environment, log)
        record["resumes"] += 1
        with log.open() as handle:
            handle.seek(mark)
            text = handle.read()
        record["corrupt"] += [line.strip() for line in text.splitlines() if line.startswith("[resume] skipping")]
        if returncode == 0:
            break
        record["corrupt"].append(f"resume exited {returncode}: {' | '.join(text.strip().splitlines()[-2:])}")
    else:
        record["error"] = "the run never finished"
    finished = (output_dir / "model_index.json").is_file()
    record["differing_tensors"] = compare(reference, output_dir) if finished else ["(no final pipeline)"]
    record["mismatch"] = bool(record["differing_tensors"])
    record["leftover_temporaries"] = temporaries(output_dir)
    record["final_checkpoints"] = checkpoints(output_dir)
    shutil.rmtree(output_dir, ignore_errors=True)
    return record


def markdown(run: dict) -> str:
    t = run["totals"]
    lines = [
        "# kill -9 and resume",
        "",
        f"Source `{run['src']}` (commit `{run['commit']}`), seed {run['seed']}. The uninterrupted run took "
        f"{run['straight']['seconds']:.1f} s (first checkpoint at {run['straight']['first_checkpoint_s']:.1f} s; "
        f"checkpoints every {EVERY} steps over {VAE_STEPS} VAE + {EBM_STEPS} EBM steps). Each trial killed the same "
        "command with SIGKILL and resumed it with `--resume_from_checkpoint latest` until it finished; the final "
        "`vae/` and `ebm/` safetensors were compared bitwise with the uninterrupted run's. Written by "
        "`benchmarks/kill_resume.py`. Control: the same run with `--seed 1` differs from it in "
        f"{run['straight']['control_seed_1_differing_tensors']} tensors, so the comparison does see differences.",
        "",
        "| trials | kills | during a checkpoint write (temporary folder present) | of them frozen mid-write and "
        "verified | corrupt checkpoints found | mismatches | leftover .tmp-* | unfinished |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {t['trials']} | {t['kills']} | {t['kills_with_a_temporary_folder']} | {t['mid_write_kills']} | "
        f"{t['corrupt']} | {t['mismatches']} | {t['leftover_temporaries']} | {t['unfinished']} |",
        "",
        "| trial | kills (mode, moment, checkpoints then, temporaries then) | resumes | corrupt | identical |",
        "| ---: | --- | ---: | --- | --- |",
    ]
    for r in run["trials"]:
        kills = "; ".join(
            f"{k['mode']}"
            + (f" {k['delay_s']} s" if "delay_s" in k else f" {k['checkpoint']} +{k['delay_ms']} ms")
            + f" at {k['at_s']} s: {k['checkpoints']}, {k['temporaries']}"
            for k in r["kills"]
        )
        corrupt = "; ".join(r["corrupt"]) or "none"
        lines.append(f"| {r['trial']} | {kills} | {r['resumes']} | {corrupt} | {'no' if r['mismatch'] else 'yes'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="killed-and-resumed runs (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="folder holding the vaebm_hub package")
    args = parser.parse_args(argv)
    src = args.src.resolve()
    environment = env(src)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="vaebm-kill-resume-") as work:
        work = Path(work)
        reference = work / "straight"
        straight = straight_run(reference, environment, work / "straight.log")
        print(f"uninterrupted: {straight}", flush=True)
        control = work / "control"  # the comparison must see a difference where there is one: another seed
        run_to_end([*command(control), "--seed", "1"], environment, work / "control.log")
        straight["control_seed_1_differing_tensors"] = len(compare(reference, control))
        print(f"control (--seed 1): {straight['control_seed_1_differing_tensors']} tensors differ", flush=True)
        window = (0.8 * (straight["first_checkpoint_s"] or 1.0), 0.97 * straight["seconds"])
        trials = []
        for index in range(args.trials):
            record = trial(index, work, environment, rng, window, reference)
            trials.append(record)
            kills = [(k["mode"], k["at_s"], k["checkpoints"], k["temporaries"]) for k in record["kills"]]
            print(
                f"[{index + 1}/{args.trials}] kills {kills} resumes {record['resumes']} corrupt {record['corrupt']} "
                f"mismatch {record['mismatch']}",
                flush=True,
            )
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    totals = {
        "trials": len(trials),
        "kills": sum(len(r["kills"]) for r in trials),
        "mid_write_kills": sum(bool(k.get("frozen_mid_write")) for r in trials for k in r["kills"]),
        "kills_with_a_temporary_folder": sum(bool(k["temporaries"]) for r in trials for k in r["kills"]),
        "corrupt": sum(len(r["corrupt"]) for r in trials),
        "mismatches": sum(r["mismatch"] for r in trials),
        "leftover_temporaries": sum(len(r["leftover_temporaries"]) for r in trials),
        "unfinished": sum(r["error"] is not None for r in trials),
    }
    run = {
        "src": str(src),
        "commit": commit.stdout.strip(),
        "seed": args.seed,
        "args": RUN_ARGS,
        "straight": straight,
        "totals": totals,
        "trials": trials,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kill_resume.json").write_text(json.dumps(run, indent=2) + "\n")
    (RESULTS / "kill_resume.md").write_text(markdown(run))
    print(f"{totals} -> {RESULTS / 'kill_resume'}.{{json,md}}")


if __name__ == "__main__":
    main()

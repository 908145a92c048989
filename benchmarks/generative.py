"""Generative fine-tuning figures (README): SmolLM2-135M-Instruct on AG News, every method on the same rows and steps.

  1. agnews_headline (description -> title): ROUGE-1/2/L before and after training, reference perplexity, training
     tokens/s, peak memory and adapter size, for each method (--methods)
  2. agnews_topic_gen (instruction -> topic word): exact match next to the MiniLM classifier's accuracy, trained for
     the same steps on the same split (the split reports' row hashes are compared to prove it)

    python benchmarks/generative.py [--data-dir ../shared/data/ag_news_csv] [--rows 400] [--steps 20]
        [--methods lora,qlora,lora_int8,prefix,ia3,full]

Writes benchmarks/generative.json and benchmarks/generative.md. On 2 CPU cores the defaults take about an hour.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, arguments, pipeline, publish  # noqa: E402

sys.path.insert(0, str(REPO))

from pipeline.manifest import hardware  # noqa: E402


def run(work: Path, name: str, overrides: list[str]) -> dict:
    """One pipeline run in a fresh process: its stage figures, process wall time and split row hashes."""
    figures = pipeline(work, name, [*overrides, f"paths.output_dir={work}"])
    split = json.loads((work / name / "split" / "report.json").read_text())["index_sha256"]
    return {**figures, "split_index_sha256": split}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--rows", type=int, default=400, help="AG News rows (80/10/10 train/validation/test)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run (batch 8)")
    parser.add_argument("--methods", default="lora,qlora,lora_int8,prefix,ia3,full")
    args = parser.parse_args()
    common = [
        f"data.dir={args.data_dir}",
        f"data.max_samples={args.rows}",
        f"train.max_steps={args.steps}",
        "train.batch_size=8",
        "train.eval_steps=0.5",
        "task.validation_rows=32",
    ]
    results: dict = {"machine": hardware(), "rows": args.rows, "steps": args.steps, "headline": {}}
    partial = Path(args.out) / "generative_partial.json"  # kept until the last run ends, in case one is cut short
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stages = "stages=[split,tokenize,train,evaluate,merge]"
        runs = {
            ("topic_gen",): ["+experiment=agnews_topic_gen", "method=lora", stages, *common],
            ("classifier",): [
                "+experiment=agnews_lora",
                "model=minilm",
                "data=ag_news_csv",
                "stages=[split,tokenize,train,evaluate]",
                *common[:4],
            ],
        }
        for method in args.methods.split(","):
            runs[("headline", method)] = ["+experiment=agnews_headline", f"method={method}", stages, *common]
        for key, overrides in runs.items():
            figures = run(work, "_".join(key), overrides)
            if len(key) == 1:
                results[key[0]] = figures
            else:
                results["headline"][key[1]] = figures
            partial.write_text(json.dumps(results, indent=2) + "\n")
    same = results["topic_gen"]["split_index_sha256"] == results["classifier"]["split_index_sha256"]
    results["same_split"] = same
    publish(args.out, "generative", table(results), results)
    partial.unlink()


def table(results: dict) -> str:
    """The README tables: per method on agnews_headline, then topic exact match vs classifier accuracy."""
    head = (
        "| method | ROUGE-1 before → after | ROUGE-2 before → after | ROUGE-L before → after "
        "| perplexity before → after | trainable params | train tokens/s | peak memory (MB) | adapter size (MB) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for method, r in results["headline"].items():
        e, t = r["evaluate"], r["train"]
        pairs = [f"{e[f'base_test_{m}']:.3f} → {e[f'test_{m}']:.3f}" for m in ("rouge1", "rouge2", "rougeL")]
        ppl = f"{e['base_test_perplexity']:.1f} → {e['test_perplexity']:.1f}"
        lines.append(
            f"| {method} | {' | '.join(pairs)} | {ppl} | {t['params_trainable']:,.0f} | {t['tokens_per_s']:.0f} "
            f"| {t['peak_memory_mb']:,.0f} | {t['saved_mb']:.1f} |"
        )
    topic, clf = results["topic_gen"]["evaluate"], results["classifier"]["evaluate"]
    lines += [
        "",
        f"Same split for both rows below: {results['same_split']} (split row hashes compared).",
        "",
        "| model | test metric | before | after |",
        "|---|---|---|---|",
        f"| SmolLM2-135M + LoRA, agnews_topic_gen | exact match | {topic['base_test_exact_match']:.3f} "
        f"| {topic['test_exact_match']:.3f} |",
        f"| MiniLM-L6 + LoRA classifier, agnews_lora | accuracy | {clf['base_test_accuracy']:.3f} "
        f"| {clf['test_accuracy']:.3f} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Baseline for the overhead benchmark: the same LoRA training as the pipeline's train stage, written as a
plain transformers Trainer script (no Hydra, MLflow, callbacks or periodic evaluation). Prints JSON.

    python benchmarks/plain_trainer.py TOKENIZED_DATASET_DIR MODEL_DIR --epochs 1 --lr 2e-3
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from datasets import load_from_disk
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("model")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output", default="/tmp/plain-trainer")
    args = parser.parse_args()
    data = load_from_disk(args.dataset)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    n_labels = len(set(data["train"]["labels"]))
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=n_labels)
    model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.SEQ_CLS, r=16, lora_alpha=32, lora_dropout=0.1, target_modules=["query", "value"]
        ),
    )
    cuda = torch.cuda.is_available()  # same precision as the pipeline's default: bf16 + TF32 on a GPU
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=args.output,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size,
            weight_decay=0.01,
            train_sampling_strategy="group_by_length",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=42,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            tf32=cuda,
        ),
        train_dataset=data["train"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    samples = trainer.state.global_step * args.batch_size
    print(json.dumps({"wall_s": wall, "samples_per_s": samples / wall}))


if __name__ == "__main__":
    main()

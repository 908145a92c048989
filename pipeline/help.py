"""`python -m pipeline --help`: the groups, their options and the composed config, in well under two seconds.

Written here rather than left to Hydra's `--help` because Hydra 1.3 builds its group listing by copying the whole
config store once per group option (about a hundred deep copies of our schemas: most of its 2+ s). The groups are
the YAML files under conf/, which is what Hydra lists too; `--hydra-help` still shows Hydra's own flags.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = """\
python -m pipeline [+experiment=NAME] [group=option ...] [key=value ...]

Fine-tunes a transformer with one method (full, LoRA, QLoRA, adapters, prefix tuning, ...) through the stages
split, tokenize, train, explore, evaluate, errors, merge and export; every run is tracked in MLflow.

  python -m pipeline +experiment=agnews_lora                     # DistilBERT + LoRA on AG News from the Hub
  python -m pipeline +experiment=agnews_lora model=minilm data=ag_news_csv data.dir=../shared/data/ag_news_csv
  python -m pipeline --multirun +experiment=agnews_compare ...   # every method, one comparison table
  python -m pipeline method=prefix --cfg job --package method    # one group's settings, resolved

Flags: --multirun (-m) sweeps, --cfg job|hydra prints a config, --hydra-help lists Hydra's own flags.
"""


def group_options(conf_dir: Path) -> dict[str, list[str]]:
    """Each config group under conf/ (its folder) and its options (its YAML files), Hydra's own group left out."""
    return {
        group.name: sorted(p.stem for p in group.glob("*.yaml"))
        for group in sorted(conf_dir.iterdir())
        if group.is_dir() and group.name != "hydra" and any(group.glob("*.yaml"))
    }


def print_help(conf_dir: Path, overrides: list[str]) -> None:
    """Print usage, the groups and the config composed with `overrides`; a bad override exits 2 with one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    groups = "\n".join(f"  {group}: {', '.join(options)}" for group, options in group_options(conf_dir).items())
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        from pipeline.overrides import compose_error

        print(f"error: {compose_error(str(exc), overrides)}", file=sys.stderr)
        sys.exit(2)
    print(f"{USAGE}\nConfiguration groups (group=option):\n{groups}\n")
    print(f"Config (override any key, e.g. train.max_steps=50):\n\n{OmegaConf.to_yaml(cfg)}")

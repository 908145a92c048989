"""The README's commands as written: every `python -m pipeline` command composes (default suite), and every
runnable one runs on a subset (`make test-slow`), so the README cannot drift from conf/ and the CLI."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.conftest import cli_env

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SHARED = REPO.parent / "shared" / "data" / "ag_news_csv"
# The scale-out command reads the overrides `make services` wrote; the run test starts services and substitutes.
SERVICES = "$(cat outputs/services/overrides.txt)"
SERVICES_TOKEN = "@services-overrides@"


def readme_commands() -> list[list[str]]:
    """`python -m pipeline...` commands of the README's code blocks and inline code, as argument lists."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README, flags=re.S | re.M)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines += [m.replace("\n", " ") for m in re.findall(r"`(python -m pipeline[^`]*)`", README)]
    commands = []
    for line in lines:
        line = re.sub(r"<[^>]*>", "<placeholder>", line.strip().removeprefix("$ ")).replace(SERVICES, SERVICES_TOKEN)
        if line.startswith(("python -m pipeline ", "NVIDIA_TF32_OVERRIDE=0 python -m pipeline ")):
            args = shlex.split(line[line.index("python") :], comments=True)
            if args not in commands:
                commands.append(args)
    return commands


COMMANDS = readme_commands()
MAIN = [c for c in COMMANDS if c[:3] == ["python", "-m", "pipeline"] and "--help" not in c]


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """A --multirun command's overrides with each basic-sweeper list cut to its first value: one job to compose."""
    out = []
    for override, text in zip(OverridesParser.create().parse_overrides(overrides), overrides, strict=True):
        if override.is_sweep_override():
            text = f"{override.get_key_element()}={next(override.sweep_string_iterator())}"
        out.append(text)
    return out


def test_the_readme_has_its_commands():
    assert len(MAIN) >= 15, MAIN  # the parser found them (a README reformat must not empty this test)


@pytest.mark.parametrize("command", MAIN, ids=[" ".join(c[3:])[:80] for c in MAIN])
def test_every_readme_command_composes(command, compose_config):
    args = [a for a in command[3:] if a != "--multirun"]
    if "--cfg" in args:  # `--cfg job --package method`: Hydra flags around the overrides
        args = [
            a
            for i, a in enumerate(args)
            if a not in ("--cfg", "--package") and args[i - 1] not in ("--cfg", "--package")
        ]
    # placeholders the surrounding text explains, and the overrides of running services
    args = [a for a in args if a not in ("...", SERVICES_TOKEN) and "<" not in a]
    cfg = compose_config(first_of_each_sweep(args))
    assert cfg.task.name and cfg.method.name


def test_help_runs_as_written():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "method" in done.stdout, done.stderr


# --- running them: on a subset, offline, into a scratch directory ------------------------------------------------
SUBSET = [
    "data.max_samples=300",
    "train.max_steps=4",
    "train.eval_steps=2",
    "stage.explore.n_samples=40",
    "hydra.sweeper.n_trials=2",
]


def runnable(command: list[str]) -> bool:
    """Self-contained: no `...`, `<placeholder>`, or file of the user's own."""
    text = " ".join(command)
    return not (
        "..." in command
        or "<" in text
        or re.search(r"data\.path=(alpaca|qa)\.", text)
        or "hydra.run.dir=outputs/runs/agnews_lora/lora_2026" in text
        or "--cfg" in command
    )


RUNNABLE = [c for c in MAIN if runnable(c)]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ag_news_csv")
@pytest.mark.parametrize("command", RUNNABLE, ids=[" ".join(c[3:])[:80] for c in RUNNABLE])
def test_every_runnable_readme_command_runs_on_a_subset(command, tmp_path, compose_config, request):
    """Offline, a command naming the Hub must stop with the offline command; every other one must succeed."""
    from pipeline.hub import hub_references

    sweep = "--multirun" in command
    own = [a for a in command[3:] if a not in ("--multirun", SERVICES_TOKEN)]
    needs_hub = bool(hub_references(compose_config(first_of_each_sweep(own))))
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    if SERVICES_TOKEN in command:
        root, _ = request.getfixturevalue("running_services")
        at = command.index(SERVICES_TOKEN)
        command = [*command[:at], *(root / "overrides.txt").read_text().split(), *command[at + 1 :]]
        env["PGPASSFILE"] = str(root / "pgpass")
    subset = [o for o in SUBSET if sweep or not o.startswith("hydra.sweeper")]
    if sweep and "+hparams_search" not in " ".join(command):
        subset = [o for o in subset if not o.startswith("hydra.sweeper")]
    if "agnews_compare" in " ".join(command) and not any("sweeper.params.method" in a for a in command):
        subset.append("hydra.sweeper.params.method='lora,tfidf_lr'")  # two of the fifteen, the rest alike
    done = subprocess.run(
        [sys.executable, *command[1:], *subset, f"paths.output_dir={tmp_path}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if needs_hub:
        assert done.returncode == 2 and "offline: python -m pipeline" in done.stderr, done.stderr[-3000:]
    else:
        assert done.returncode == 0, done.stderr[-3000:]

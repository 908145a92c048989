"""Hydra's report on command-line overrides it cannot compose or parse, as the one `error:` line a user sees
(from `python -m pipeline` and its `--help`)."""

from __future__ import annotations

import re


def compose_error(report: str, args: list[str]) -> str:
    """Hydra's report of a config it could not compose, as one line naming the key or group."""
    if "override_grammar" in report:  # a syntax error: Hydra's report may not say in which override
        unparsable = unparsable_override([a for a in args if "=" in a and not a.startswith("-")])
        if unparsable:
            return unparsable
    unmade = re.search(r"in mkdir\b.*\b\w+Error: \[Errno \d+\] ([^:]+): '([^']+)'", " ".join(report.splitlines()))
    if unmade:  # Hydra could not make the run (or sweep) directory, by default under paths.output_dir
        key = "hydra.sweep.dir" if {"--multirun", "-m"} & set(args) else "hydra.run.dir"
        if not any(arg.startswith(f"{key}=") for arg in args):
            key = "paths.output_dir"
        path, reason = unmade.group(2), unmade.group(1).lower()
        return f"{key}: cannot make the directory {path} ({reason}); expected a path where a directory can be made"
    missing = re.search(r"Could not find '([^']+)'", report)
    if missing:  # an unknown option of a group: `method=nope`, `+experiment=nope`
        group, _, name = missing.group(1).rpartition("/")
        listed = report.split("Available options in", 1)[1:]
        options = [o.strip() for o in listed[0].split("Config search path:")[0].splitlines()[1:] if o.strip()]
        return f"{group or name}: no option {name!r}" + (f"; expected one of {', '.join(options)}" if options else "")
    lines = [line.strip().rstrip(".") for line in report.splitlines() if line.strip()]
    lines = [line for line in lines if not re.match(r"(full_key|\w+_type=)", line) and "HYDRA_FULL_ERROR" not in line]
    found = re.search(r"full_key: (\S+)", report) or re.search(r"override '([^']+)'", report)
    return (f"{found.group(1)}: " if found else "") + "; ".join(lines)


def unparsable_override(overrides: list[str]) -> str | None:
    """The first of `overrides` that Hydra's grammar rejects, as one line naming its key; None if all parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except HydraException as exc:
            key = re.split(r"[=@]", override.lstrip("+~"), maxsplit=1)[0]
            reason = str(exc).splitlines()[0].split(" expecting {", 1)[0]  # not the grammar's list of tokens
            return (
                f"{key}: cannot parse the override {override!r} ({reason}); quote a value with special characters, "
                """e.g. 'key=["a==1"]' (https://hydra.cc/docs/advanced/override_grammar/basic)"""
            )
    return None

"""Whether the Hugging Face Hub can be used now, checked once before a run that names a Hub model or dataset.

Without this, an offline machine spends ~40 s in huggingface_hub's retries before failing with a bare OSError.
The check makes that one line within seconds that gives the offline command; when everything the run names is
in the local Hugging Face cache, it switches the libraries to offline mode and the run goes on from the cache.
"""

from __future__ import annotations

import functools
import os
import shlex
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.config import DataSource, value
from pipeline.errors import PipelineError

PROBE_TIMEOUT_S = 5.0
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of HF_HUB_OFFLINE
# The offline AG News copy this project's README uses; named in the hint only where it exists.
SHARED_AG_NEWS = Path("../shared/data/ag_news_csv")


def hub_references(cfg: Any) -> dict[str, str]:
    """The config fields that name something on the Hub (`model.name_or_path`, `data.name`) and what they name."""
    from pipeline.models import hub_model_id

    refs: dict[str, str] = {}
    model_id = hub_model_id(cfg.model)
    if model_id:
        refs["model.name_or_path"] = model_id
    if DataSource(value(cfg.data.source)) == DataSource.hub and cfg.data.name:
        refs["data.name"] = str(cfg.data.name)
    return refs


@functools.cache
def offline_reason() -> str | None:
    """Why the Hub cannot be reached now (HF_HUB_OFFLINE set, or no answer from the endpoint), None if it can.

    Probed once per process with a HEAD request that honours the usual proxy variables; the probe runs in a
    thread so a hanging DNS lookup is bounded too.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE_VALUES:
        return "HF_HUB_OFFLINE=1 is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=PROBE_TIMEOUT_S)
            outcome.append(None)
        except urllib.error.HTTPError:  # the server answered: reachable
            outcome.append(None)
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            outcome.append(f"the Hugging Face Hub ({endpoint}) is unreachable ({cause})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 1)
    if not outcome:
        return f"the Hugging Face Hub ({endpoint}) did not answer within {PROBE_TIMEOUT_S:.0f} s"
    return outcome[0]


def is_cached(field: str, ref: str, cfg: Any) -> bool:
    """Whether a Hub model or dataset the run names is in the local cache, so it loads without the network."""
    if field == "model.name_or_path":
        from huggingface_hub import try_to_load_from_cache

        filename = getattr(cfg.model, "gguf_file", None) or "config.json"
        return isinstance(try_to_load_from_cache(ref, str(filename), revision=cfg.model.revision), str)
    import datasets

    # datasets keeps a prepared Hub dataset under <cache>/<owner>___<name>; offline it loads from there.
    return (Path(datasets.config.HF_DATASETS_CACHE) / ref.replace("/", "___")).is_dir()


def use_offline_mode() -> None:
    """Make huggingface_hub, transformers and datasets read only their caches for the rest of this process.

    Their HF_HUB_OFFLINE switch is read from the environment at import time, and they may already be imported:
    the module-level flags they consult on each call are set as well.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


def offline_command(cfg: Any, overrides: list[str], fields: list[str], offline_model: str | None) -> str:
    """The user's command with the Hub model/data swapped for ones that load from local files."""
    drop = set()
    add = []
    if "model.name_or_path" in fields:
        drop.add("model")
        add.append(f"model={offline_model}" if offline_model else "model.name_or_path=<local model folder>")
    if "data.name" in fields:
        drop.add("data")
        if str(cfg.data.name).rsplit("/", 1)[-1] == "ag_news":
            folder = (
                shlex.quote(str(SHARED_AG_NEWS))
                if SHARED_AG_NEWS.is_dir()
                else "<folder with AG News train.csv/test.csv>"
            )
            add.append(f"data=ag_news_csv data.dir={folder}")
        else:
            add.append("data=csv data.path=<your .csv/.jsonl/.parquet file>")
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] not in drop]
    return " ".join(["python -m pipeline", *map(shlex.quote, kept), *add])  # to paste into a shell as it is


def check_hub(cfg: Any, overrides: list[str], offline_model: str | None) -> None:
    """Fail within seconds, with the offline command, when the run needs a Hub download the machine cannot make."""
    refs = hub_references(cfg)
    if not refs:
        return
    reason = offline_reason()
    if reason is None:
        return
    missing = [field for field, ref in refs.items() if not is_cached(field, ref, cfg)]
    if missing:
        named = ", ".join(f"{field}={refs[field]!r}" for field in missing)
        raise PipelineError(
            f"{named}: not in the local Hugging Face cache, and {reason}; offline: "
            f"{offline_command(cfg, overrides, missing, offline_model)}"
        )
    use_offline_mode()

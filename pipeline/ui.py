"""`make ui`'s first lines: direct links to the latest experiment's runs, sorted by the headline metric, and charts.

MLflow 3 opens an experiment on its GenAI overview when the browser is in GenAI mode, whatever the experiment's
`mlflow.experimentKind` tag says (the tag is set, and read in some modes only); the runs and chart views have
their own addresses, which open the same way in every mode.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote


def links(tracking_uri: str, base_url: str) -> list[str]:
    """Lines naming the latest experiment (the one of the latest run) and its runs and chart views."""
    from mlflow import MlflowClient

    from pipeline.tasks import registered_tasks

    client = MlflowClient(tracking_uri)
    experiments = {e.experiment_id: e for e in client.search_experiments()}
    latest = client.search_runs(list(experiments), order_by=["attributes.start_time DESC"], max_results=1)
    if not latest:
        return [f"MLflow UI: {base_url} (no runs yet)"]
    experiment_id = latest[0].info.experiment_id
    headlines = [f"test_{task.headline_metric}" for task in registered_tasks()]  # as pipeline.runner logs them
    metric = next(
        (m for m in headlines if client.search_runs([experiment_id], f"metrics.`{m}` > -1e300", max_results=1)), None
    )
    runs = f"{base_url}/#/experiments/{experiment_id}/runs"
    query = [f"orderByKey={quote(f'metrics.`{metric}`')}", "orderByAsc=false"] if metric else []
    return [
        f"MLflow UI: {base_url}",
        f"  latest experiment, {experiments[experiment_id].name}:",
        f"    runs{f' by {metric}' if metric else ''}: {runs}" + "?" * bool(query) + "&".join(query),
        f"    charts: {runs}?" + "&".join([*query, "compareRunsMode=CHART"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("base_url")
    args = parser.parse_args(argv)
    print("\n".join(links(args.tracking_uri, args.base_url)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

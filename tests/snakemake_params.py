"""What Snakemake would compare to decide a rerun, without running anything.

`python tests/snakemake_params.py SNAKEFILE WORKDIR CONFIGFILE` builds the DAG of every job (forceall: no
output needs to exist) through Snakemake's API and prints, as one JSON object, for each job
(`rule:wildcards`) the serialised params Snakemake stores in `.snakemake/metadata` and compares on the
next run (`persistence._params`: a changed entry is "params have changed since last execution"), and
the report rule's list of evaluated models (`get_evaluated_models()` of workflow/rules/common.smk).
Run as a subprocess: the API changes the working directory and its logging is process-wide.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(snakefile: str, workdir: str, configfile: str) -> None:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(configfile)]),
            snakefile=Path(snakefile),
            workdir=Path(workdir),
        )
        workflow_api.dag(DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        params = {
            f"{job.rule.name}:{sorted(job.wildcards_dict.items())}": workflow.persistence._params(job)
            for job in workflow.dag.jobs
        }
        models = workflow.globals["get_evaluated_models"]()
    print("\nSTAGEWISE-PARAMS " + json.dumps({"params": params, "models": models}, sort_keys=True, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])

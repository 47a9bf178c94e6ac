"""Dataset jobs: sharded, resumable, written to a run folder (the only place, with the
report and the CLI, that writes results to disk)."""
from gradsum.run.engines import ENGINES, RayEngine, engine_for
from gradsum.run.jobs import evaluate_job, evaluation_kind, load_profile, profile_job
from gradsum.run.runner import (
           Engine,
           Job,
           LocalEngine,
           RunFolderError,
           read_table,
           run_sharded,
           write_table,
)

__all__ = ["Engine", "Job", "LocalEngine", "RayEngine", "ENGINES", "engine_for", "RunFolderError", "evaluate_job",
           "evaluation_kind", "load_profile", "profile_job", "read_table", "run_sharded", "write_table"]

"""The DMT study in miniature (tools/run_pipeline.py): a stage runner with resume, the plan
of the study, and its results (paper-shaped table, loss curves, feature PCA picture)."""
from .design import StudyOptions
from .results import Run, build_results
from .runner import Stage, StageError, StageRunner
from .study import Study

__all__ = ['Run', 'build_results', 'Stage', 'StageError', 'StageRunner', 'Study',
           'StudyOptions']

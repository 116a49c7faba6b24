"""``Operations.Transformations``: the transformation system's settings.

Transformation types: the built-in ones (``MCSimulation``, ``Processing``, ``Merge`` make jobs;
``Replication``, ``Removal`` make data operations) plus those an administrator adds here, each
declared job-producing (``JobTypes``) or data-operation-producing (``DataOperationTypes``).

Example::

    >>> cfg = TransformationsConfig.model_validate({"JobTypes": ["Reconstruction"],
    ...                                             "FilesMaxResetCounter": 3})
    >>> cfg.kind_of("Reconstruction"), cfg.kind_of("Replication"), cfg.kind_of("Nope")
    ('Job', 'Request', None)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_pascal

BUILTIN_JOB_TYPES = ("MCSimulation", "Processing", "Merge")
BUILTIN_DATA_TYPES = ("Replication", "Removal")


class TransformationsConfig(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True,
                              extra="forbid", frozen=True)

    #: extra job-producing types (DIRAC's ``Operations/Transformations/DataProcessing``)
    job_types: list[str] = Field(default_factory=list)
    #: extra data-operation-producing types (DIRAC's ``DataManipulation``)
    data_operation_types: list[str] = Field(default_factory=list)
    #: a file failing this many times becomes ``MaxReset`` (DIRAC's FilesMaxResetCounter)
    files_max_reset_counter: int = Field(default=10, ge=1)
    #: LFN directory of a task's outputs (``{vo}``, ``{transformation}``, ``{task}``)
    output_path: str = "/{vo}/prod/{transformation:08d}/{task:08d}"
    #: tasks per bulk submission (one WMS transaction / one request batch)
    submit_batch: int = Field(default=1000, ge=1, le=10_000)
    #: job batches: prepare the next one while the previous one is being stored (a writer
    #: thread with its own connection; never on SQLite, whose writes take one lock anyway)
    submit_overlap: bool = True
    #: seconds between full reconciliations of the input queries with the catalog
    reconcile_period: float = Field(default=3600.0, ge=0)
    #: catalog changes read per journal step
    journal_batch: int = Field(default=20_000, ge=100)
    #: seconds a task may stay Reserved (a crashed submitter) before it is checked again
    reserved_timeout: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> TransformationsConfig:
        both = set(self.job_types) & set(self.data_operation_types)
        clash = (set(self.job_types) & set(BUILTIN_DATA_TYPES)) | (
            set(self.data_operation_types) & set(BUILTIN_JOB_TYPES))
        if both or clash:
            raise ValueError(f"transformation types declared twice: {sorted(both | clash)}")
        return self

    @property
    def all_job_types(self) -> tuple[str, ...]:
        return BUILTIN_JOB_TYPES + tuple(self.job_types)

    @property
    def all_data_types(self) -> tuple[str, ...]:
        return BUILTIN_DATA_TYPES + tuple(self.data_operation_types)

    def kind_of(self, trans_type: str) -> str | None:
        """``"Job"``, ``"Request"`` or None for an unknown type."""
        if trans_type in self.all_job_types:
            return "Job"
        if trans_type in self.all_data_types:
            return "Request"
        return None

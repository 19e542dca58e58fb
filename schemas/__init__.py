"""The contracts: the sample record, the stats and rejects tables, the manifest, the job file."""
from .job import DEFAULT_PROMPT, Job, JobError, build_dataclass, load_job, read_job_yaml
from .manifest import MANIFEST_NAME, REJECTS_DIR, SHARDS_DIR, STATS_DIR, WORK_DIR
from .records import CAPTION_EXT, IMAGE_EXT, RECORD_EXT, SAMPLE_COLUMNS, SAMPLE_SCHEMA
from .rejects import REASONS, REJECT_COLUMNS, REJECT_SCHEMA
from . import batch
from .train_job import TrainJob, load_train_job

"""manifest.json: what a run produced, and with what."""

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

# Top-level keys of manifest.json.
#   version   MANIFEST_VERSION
#   job       the job config as run (after --set and defaults)
#   versions  {package: version} for pixcap and the libraries that shape the output
#   models    {stage: {"name": ..., "revision"/"sha256": ...}}
#   shards    [{"name", "tar", "stats", "rejects", "samples", "rejected", "bytes", "sha256"}]
#   totals    {"inputs", "written", "rejected", "shards", "bytes", "rejected_by_reason": {...}}
MANIFEST_KEYS = ("version", "job", "versions", "models", "shards", "totals")

# Key-value metadata stored in each stats parquet at commit, so the manifest is rebuilt
# from the parquet footers without rereading any tar.
SHARD_META_BYTES = b"pixcap.shard_bytes"
SHARD_META_SHA256 = b"pixcap.shard_sha256"
SHARD_META_REJECTED = b"pixcap.rejected"

# Output folder layout.
SHARDS_DIR = "shards"
STATS_DIR = "stats"
REJECTS_DIR = "rejects"
WORK_DIR = "_work"  # fragments and the resume ledger
FRAGMENTS_DIR = "fragments"  # under WORK_DIR: finished rows, not yet committed
PARTS_DIR = "parts"  # under WORK_DIR: a done-marker per input part whose shards are all committed
TMP_SUFFIX = ".tmp"  # a file being written; renamed to its final name when complete

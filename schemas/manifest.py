"""manifest.json: what a run produced, and with what."""

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "pixcap-output"  # marks a folder as a pixcap output; anything else is refused
MANIFEST_VERSION = 2

# Top-level keys of manifest.json.
#   format       MANIFEST_FORMAT
#   version      MANIFEST_VERSION
#   fingerprint  {dotted setting: value} of everything that changes content, with model revisions
#   job          the job config of the latest run (after --set and defaults)
#   versions     {package: version} for pixcap and the libraries that shape the output
#   models       {stage: {"name", "resolved", "revision", ...}}
#   inputs       [{"uri", "kind", "identity", "prefix", "written", "rejected"}]: every input, once
#   runs         [{"started", "ended", "status", "host", "user", "command", "pixcap", "git_commit",
#                  "python", "os", "added_inputs", "written", "rejected"}]: appended, never rewritten
#   shards       [{"name", "samples", "rejected", "rejected_by_reason",
#                  "tar", "embeddings" (None without samples), "stats", "rejects": {"path", "bytes", "sha256"}}]
#   totals       {"inputs", "written", "rejected", "shards", "tars", "bytes", "rejected_by_reason"}
MANIFEST_KEYS = ("format", "version", "fingerprint", "job", "versions", "models", "inputs", "runs", "shards", "totals")

# Key-value metadata stored in each stats parquet at commit, so the manifest is rebuilt
# from the parquet footers without rereading any tar.
SHARD_META_BYTES = b"pixcap.shard_bytes"
SHARD_META_SHA256 = b"pixcap.shard_sha256"
SHARD_META_REJECTED = b"pixcap.rejected"
SHARD_META_REJECTS_SHA256 = b"pixcap.rejects_sha256"
SHARD_META_EMBEDDINGS_SHA256 = b"pixcap.embeddings_sha256"

# Output folder layout.
LOCK_NAME = ".pixcap.lock"  # one run per output (pipeline/lock.py)
SHARDS_DIR = "shards"
STATS_DIR = "stats"
REJECTS_DIR = "rejects"
EMBEDDINGS_DIR = "embeddings"  # SHARD.npy: float16 CLIP image embeddings, one row per stats row, in order
WORK_DIR = "_work"  # fragments and the resume ledger
LOGS_DIR = "_logs"  # Ray's console output (pixcap run --verbose shows it instead)
FRAGMENTS_DIR = "fragments"  # under WORK_DIR: finished rows, not yet committed
PARTS_DIR = "parts"  # under WORK_DIR: a done-marker per input part whose shards are all committed
BLOBS_DIR = "blobs"  # under WORK_DIR: BLOBS_DIR/SHARD/INDEX.jpg, each image's stored bytes until its shard commits
TMP_SUFFIX = ".pixcap-tmp"  # a file being written, renamed when complete; the only temp name pixcap makes

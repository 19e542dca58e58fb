"""`pixcap report` on a real output of the pipeline: its rejects and shards agree with the manifest,
and its gallery is read from the shards."""
import tarfile

import pytest

from pixcap.analysis.report import write_report
from pixcap.analysis.stats import concept_density

from .report_page import table1_data, table_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(pipeline_output, tmp_path_factory):
    out, manifest = pipeline_output
    path = tmp_path_factory.mktemp("report") / "report.html"
    written = write_report([str(out)], str(path))
    return out, manifest, written, path.read_text()


def test_table1_is_pixcap_stats(report):
    out, manifest, written, page = report
    [entry] = table1_data(page)
    assert entry["table"] == concept_density(str(out)) == written.summaries[0].table
    assert entry["table"]["images"] == manifest["totals"]["written"]


def test_rejects_and_shards_agree_with_the_manifest(report):
    _, manifest, written, page = report
    summary = written.summaries[0]
    by_reason = {}
    for (stage, reason), n in summary.rejects.by_stage_reason.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    assert by_reason == manifest["totals"]["rejected_by_reason"]
    shards = {row[1]: (int(row[2]), int(row[3])) for row in table_rows(page, "shards")}
    assert shards == {s["name"]: (s["samples"], s["rejected"]) for s in manifest["shards"]}


def test_gallery_and_training_fit_come_from_the_samples(report):
    out, manifest, written, _ = report
    summary = written.summaries[0]
    examples = [e for group in summary.gallery.values() for e in group]
    assert examples and all(e.thumbnail for e in examples)
    for example in examples:
        with tarfile.open(out / "shards" / f"{example.pick.shard}.tar") as tar:
            caption = tar.extractfile(f"{example.pick.key}.txt").read().decode()
        assert example.caption == caption and example.record["clip_score"] == pytest.approx(example.pick.clip_score)
    assert all(assigned == manifest["totals"]["written"] for assigned, _ in summary.fit.totals().values())

"""An eval's summary as the few lines `pixcap eval` prints."""
from __future__ import annotations

from pixcap.schemas import evaluation as e


def _figure(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_summary(summary: dict) -> str:
    lines = [f"{summary[e.SUMMARY_IMAGES]} images; {summary[e.SUMMARY_LABEL]}"]
    for metric, figures in summary[e.SUMMARY_METRICS].items():
        overall = figures["overall"]
        lines.append(f"  {metric:18s} {_figure(overall['mean'])}  ({overall['count']} images)")
    lines.append(f"  {'geneval overall':18s} {_figure(summary[e.SUMMARY_GENEVAL_OVERALL])}")
    fid = summary[e.SUMMARY_FID]
    lines.append(f"  {'fid':18s} {_figure(fid.get('fid'), 2)}")
    lines.append(f"  {'clip_fid':18s} {_figure(fid.get('clip_fid'), 4)}")
    return "\n".join(lines)

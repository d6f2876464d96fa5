"""The run report: one static HTML page over an output folder's rows and QC overlays.

``DIR/report.html`` is rewritten with the CSVs (`pipelines.batch`), from the same rows, so
the two never disagree. It is one self-contained file (inline style, no script, images by
relative path to ``qc/``) that any browser opens from the folder:

- the run's counts and provenance (calcitrack version, config hash);
- one line per film: status, deposits, total area, scores, severity and calibration, with
  the error and its remedy for a failed film;
- for ``track`` and ``followup``: each comparison's whole-film change (areas, change,
  category, response, or why it was refused) and each series' burden-over-time plot;
- per analysed film: its QC overlay (loaded lazily, so a large batch's page opens at once),
  its burden per region and its deposits;
- the skipped files, folded away.

The page is deterministic (no clock in it): the same rows give the same bytes.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence

from imaging.compare import ALL_REGIONS
from imaging.export import format_cell
from imaging.files import atomic_output

REPORT_NAME = "report.html"

#: (column, heading) of the films, comparisons, per-region, deposits and skipped tables.
FILM_TABLE = (("image_id", "film"), ("status", "status"), ("n_deposits", "deposits"),
              ("total_area_mm2", "area mm²"), ("density_score_mm2", "density score mm²"),
              ("integrated_density_mm2", "integrated density mm²"), ("severity", "severity"),
              ("body_part", "body part"), ("laterality", "side"), ("study_date", "study date"),
              ("spacing_source", "calibration"), ("error", "error"))
CHANGE_TABLE = (("baseline_image_id", "baseline"), ("followup_image_id", "follow-up"),
                ("reference", "against"), ("baseline_study_date", "baseline date"),
                ("followup_study_date", "follow-up date"), ("status", "status"),
                ("baseline_area_mm2", "baseline mm²"), ("followup_area_mm2", "follow-up mm²"),
                ("change_pct", "change %"), ("category", "category"),
                ("density_score_change_pct", "density score change %"),
                ("within_repeatability", "within repeatability"), ("n_new", "new"),
                ("n_resolved", "resolved"), ("unseen", "unseen"), ("response", "response"),
                ("registration_correlation", "registration correlation"), ("reason", "reason"))
REGION_TABLE = (("region", "region"), ("n_deposits", "deposits"), ("area_mm2", "area mm²"),
                ("fraction", "fraction of soft tissue"), ("largest_area_mm2", "largest mm²"),
                ("mean_relative_density", "mean relative density"),
                ("density_score_mm2", "density score mm²"),
                ("integrated_density_mm2", "integrated density mm²"), ("severity", "severity"))
DEPOSIT_TABLE = (("deposit_id", "deposit"), ("region", "region"), ("morphology", "morphology"),
                 ("area_mm2", "area mm²"), ("relative_density", "relative density"),
                 ("cnr", "CNR"), ("periarticular", "periarticular"), ("centroid_row", "row"),
                 ("centroid_col", "column"))
SKIPPED_TABLE = (("source_path", "file"), ("notes", "reason"))
#: Columns of words, set flush left (numbers are set flush right).
TEXT_COLUMNS = frozenset({"image_id", "error", "baseline_image_id", "followup_image_id",
                          "reason", "source_path", "notes"})

#: Decimals shown per column (the CSVs keep `imaging.export.FLOAT_DIGITS` significant digits).
DECIMALS = {"total_area_mm2": 1, "area_mm2": 1, "largest_area_mm2": 1, "density_score_mm2": 1,
            "integrated_density_mm2": 1, "mean_relative_density": 2, "relative_density": 2,
            "cnr": 1, "centroid_row": 0, "centroid_col": 0, "fraction": 4,
            "baseline_area_mm2": 1, "followup_area_mm2": 1, "change_pct": 1,
            "density_score_change_pct": 1,
            "registration_correlation": 3}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
th, td { border: 1px solid #c8c8c8; padding: 0.2em 0.5em; text-align: right; }
td { white-space: nowrap; }
td.text { white-space: normal; }
th { background: #eef1f4; }
td.text, th.text { text-align: left; }
tr.error td { background: #fbe9e7; }
img.qc { max-width: 100%; width: 900px; border: 1px solid #888; }
img.plot { max-width: 100%; width: 700px; }
.note { color: #555; }
"""


def write_run_report(out_dir: str | os.PathLike, outputs: Sequence, *,
                     changes: Iterable[dict] = (), plots: Sequence[str] = ()) -> None:
    """Write ``report.html`` into `out_dir` (atomically) from the rows of its CSVs.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output folder; the QC overlays and plots are linked relative to it.
    outputs : sequence of pipelines.batch.FilmOutput
        Every film's ``images.csv``, ``deposits.csv`` and ``regions.csv`` rows.
    changes : rows of ``changes.csv``, optional
    plots : paths of the burden-over-time plots relative to `out_dir`, optional
    """
    page = run_report_html([output.image for output in outputs],
                           [row for output in outputs for row in output.deposits],
                           [row for output in outputs for row in output.regions],
                           changes=changes, plots=plots)
    with atomic_output(os.path.join(out_dir, REPORT_NAME)) as tmp, \
            open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)


def run_report_html(images: Sequence[dict], deposits: Iterable[dict], regions: Iterable[dict],
                    *, changes: Iterable[dict] = (), plots: Sequence[str] = ()) -> str:
    """The report page (see the module docstring) as a string."""
    by_film_deposits: dict[str, list[dict]] = {}
    for row in deposits:
        by_film_deposits.setdefault(row["image_id"], []).append(row)
    by_film_regions: dict[str, list[dict]] = {}
    for row in regions:
        by_film_regions.setdefault(row["image_id"], []).append(row)
    skipped = [row for row in images if row["status"] == "skipped"]
    films = [row for row in images if row["status"] != "skipped"]
    counts = {status: sum(row["status"] == status for row in images)
              for status in ("ok", "error", "skipped")}
    provenance = sorted({(str(row.get("calcitrack_version")), str(row.get("config_hash")))
                         for row in films})
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>calcitrack report</title>", f"<style>{_STYLE}</style>",
        "</head>", "<body>", "<h1>calcitrack report</h1>",
        f'<p id="counts">{counts["ok"]} analysed, {counts["error"]} failed, '
        f'{counts["skipped"]} skipped; '
        f'{sum(len(v) for v in by_film_deposits.values())} deposits.</p>',
        '<p class="note">' + "; ".join(
            f"calcitrack {_text(version)}, configuration {_text(config)}"
            for version, config in provenance)
        + ". Numbers are rounded here; the CSVs beside this page hold them in full.</p>",
    ]
    if films:
        parts += ["<h2>Films</h2>",
                  _table(films, FILM_TABLE, 'id="films"', linked="image_id",
                         failed=lambda row: row["status"] == "error")]
    # Deposits left out because the other film cannot show them, on either film.
    whole_film = [{**row, "unseen": sum(int(row.get(f"{side}_n_unseen") or 0)
                                        for side in ("baseline", "followup"))
                   if row.get("status") == "ok" else None}
                  for row in changes if row.get("region") == ALL_REGIONS]
    if whole_film or plots:
        parts += ["<h2>Serial comparisons</h2>",
                  _table(whole_film, CHANGE_TABLE, 'id="changes"',
                         failed=lambda row: row.get("status") == "refused")]
        parts += [f'<img class="plot" src="{_text(path)}" alt="burden over time">'
                  for path in plots]
    for row in films:
        if row["status"] == "ok":
            parts += _film_section(row, by_film_regions.get(row["image_id"], []),
                                   by_film_deposits.get(row["image_id"], []))
    if skipped:
        parts += [f"<details><summary>{len(skipped)} files skipped</summary>",
                  _table(skipped, SKIPPED_TABLE, 'id="skipped"'), "</details>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _film_section(image: dict, regions: Sequence[dict], deposits: Sequence[dict]) -> list[str]:
    name = _text(image["image_id"])
    parts = [f'<section id="{name}">', f"<h2>{name}</h2>",
             f'<p class="note">{_text(image.get("source_path"))}</p>']
    if image.get("qc_path"):
        parts.append(f'<img class="qc" loading="lazy" src="{_text(image.get("qc_path"))}" '
                     f'alt="QC overlay of {name}">')
    parts.append(_table(regions, REGION_TABLE, 'class="regions"'))
    parts.append(_table(deposits, DEPOSIT_TABLE, 'class="deposits"') if deposits
                 else '<p class="deposits">No deposit found.</p>')
    parts.append("</section>")
    return parts


def _table(rows: Sequence[dict], columns, attributes: str, *, failed=None,
           linked: str | None = None) -> str:
    """A table of `rows` over `columns` ((column, heading) pairs); `failed(row)` marks a row
    as an error and `linked` names the column whose ok rows link to their film's section."""
    head = "".join(f"<th{_align(column)}>{_text(heading)}</th>" for column, heading in columns)
    lines = [f"<table {attributes}>", f"<tr>{head}</tr>"]
    for row in rows:
        cells = []
        for column, _ in columns:
            cell = _cell(row, column)
            if column == linked and row.get("status") == "ok":
                cell = f'<a href="#{cell}">{cell}</a>'
            cells.append(f"<td{_align(column)}>{cell}</td>")
        css = ' class="error"' if failed is not None and failed(row) else ""
        lines.append(f"<tr{css}>{''.join(cells)}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _align(column: str) -> str:
    return ' class="text"' if column in TEXT_COLUMNS else ""


def _text(value) -> str:
    """A cell as the CSVs write it, escaped for HTML."""
    return html.escape(format_cell(value))


def _cell(row: dict, column: str) -> str:
    """A row's cell for the page: rounded to `DECIMALS` where it is a number."""
    value = row.get(column)
    if column in DECIMALS and value not in (None, ""):
        try:
            value = f"{float(value):.{DECIMALS[column]}f}"
        except ValueError:
            pass
    return _text(value)

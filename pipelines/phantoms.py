"""`calcitrack phantom`: generate phantom films, serial sets and the shipped sample images.

Sub-actions::

    calcitrack phantom film --anatomy hand --seed 3 --out DIR
    calcitrack phantom series --anatomy hand --seed 7 --changes progression,improvement --out DIR
    calcitrack phantom samples --out sample_images

Each film is written as DICOM with its truth files (see `imaging.phantom.storage`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from imaging.files import atomic_output
from imaging.phantom import (MORPHOLOGIES, PhantomSpec, SeriesSpec, make_film, make_series,
                             write_film, write_series)

TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless,
                     "j2k": JPEG2000Lossless}

#: The command that makes `sample_images/`; repeated in its README.
SAMPLES_COMMAND = "calcitrack phantom samples --out sample_images"


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``phantom`` subcommand to an argparse subparsers object.

    Each action sets ``handler`` (call it with the parsed namespace; it returns an exit code:
    0 ok, 2 bad arguments).
    """
    parser = subparsers.add_parser(
        "phantom", help="generate phantom radiographs of calcinosis with exact ground truth",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="phantom_action", metavar="ACTION", required=True)

    film = actions.add_parser("film", help="one phantom film and its truth files")
    _film_options(film)
    film.add_argument("--n-deposits", type=int, default=None,
                      help="deposits on the film (0 = negative; default 1-12 from the seed)")
    film.add_argument("--dose", type=float, default=1.0, help="relative exposure (default 1)")
    film.add_argument("--name", default=None, help="base file name (default ANATOMY_sSEED)")
    film.set_defaults(handler=run_film)

    series = actions.add_parser("series", help="serial films of one phantom patient")
    _film_options(series)
    series.add_argument("--changes", default="progression,improvement",
                        help="comma-separated changes between visits: progression, stable, "
                             "improvement, resolution, new (default progression,improvement)")
    series.add_argument("--n-deposits", type=int, default=None, help="deposits at baseline")
    series.add_argument("--name", default=None, help="base file name (default ANATOMY_seriesSEED)")
    series.set_defaults(handler=run_series)

    samples = actions.add_parser("samples", help="regenerate the shipped sample_images set")
    samples.add_argument("--out", type=Path, default=Path("sample_images"))
    samples.set_defaults(handler=run_samples)

    qc = actions.add_parser("qc", help="picture of the sample phantoms beside a real hand film")
    qc.add_argument("--real", type=Path, required=True, help="a real hand PA radiograph")
    qc.add_argument("--samples", type=Path, default=Path("sample_images"))
    qc.add_argument("--out", type=Path, default=Path("docs/phantoms.png"))
    qc.set_defaults(handler=run_qc)
    return parser


def _film_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anatomy", choices=("hand", "forearm", "lower_leg"), default="hand")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--spacing-mm", type=float, default=None,
                        help="pixel spacing (default 0.15 mm; 0.2 mm for a lower leg)")
    parser.add_argument("--morphologies", default=",".join(MORPHOLOGIES),
                        help="comma-separated deposit morphologies to draw from")
    parser.add_argument("--laterality", choices=("R", "L"), default="R")
    parser.add_argument("--metal", choices=("wire", "screw"), default=None)
    parser.add_argument("--no-marker", action="store_true", help="no lead R/L marker")
    parser.add_argument("--bits", type=int, default=12, choices=range(12, 17), metavar="12-16")
    parser.add_argument("--photometric", choices=("MONOCHROME2", "MONOCHROME1"),
                        default="MONOCHROME2")
    parser.add_argument("--modality", choices=("DX", "CR"), default="DX")
    parser.add_argument("--spacing-attribute", choices=("PixelSpacing", "ImagerPixelSpacing"),
                        default="PixelSpacing")
    parser.add_argument("--magnification", type=float, default=1.1,
                        help="ERMF written with Imager Pixel Spacing (default 1.1)")
    parser.add_argument("--transfer-syntax", choices=tuple(TRANSFER_SYNTAXES), default="j2k",
                        help="explicit (uncompressed), rle or j2k (JPEG 2000 lossless)")


def _format(args) -> dict:
    return {"photometric": args.photometric, "modality": args.modality,
            "spacing_attribute": args.spacing_attribute, "magnification": args.magnification,
            "transfer_syntax": TRANSFER_SYNTAXES[args.transfer_syntax]}


def _morphologies(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _reports_bad_arguments(handler):
    """Turn a bad-argument ValueError into a one-line message and exit code 2."""
    def wrapped(args) -> int:
        try:
            return handler(args)
        except ValueError as exc:
            print(f"calcitrack phantom {args.phantom_action}: {exc}", file=sys.stderr)
            return 2
    wrapped.__doc__ = handler.__doc__
    wrapped.__name__ = handler.__name__
    return wrapped


@_reports_bad_arguments
def run_film(args) -> int:
    """Handler of ``phantom film``."""
    spec = PhantomSpec(args.anatomy, seed=args.seed, spacing_mm=args.spacing_mm, dose=args.dose,
                       n_deposits=args.n_deposits, morphologies=_morphologies(args.morphologies),
                       laterality=args.laterality, marker=not args.no_marker, metal=args.metal,
                       bits_stored=args.bits)
    film = make_film(spec)
    name = args.name or f"{args.anatomy}_s{args.seed}"
    files = write_film(film, args.out, name, **_format(args))
    print(f"{files.dicom}: {len(film.deposits)} deposits, {film.total_area_mm2:.1f} mm²")
    return 0


@_reports_bad_arguments
def run_series(args) -> int:
    """Handler of ``phantom series``."""
    spec = SeriesSpec(args.anatomy, seed=args.seed, changes=_morphologies(args.changes),
                      n_deposits=args.n_deposits, spacing_mm=args.spacing_mm,
                      morphologies=_morphologies(args.morphologies), laterality=args.laterality,
                      marker=not args.no_marker, metal=args.metal, bits_stored=args.bits)
    series = make_series(spec)
    name = args.name or f"{args.anatomy}_series{args.seed}"
    written = write_series(series, args.out, name, [_format(args)] * len(series.visits))
    for files, film in zip(written, series.visits):
        print(f"{files.dicom}: {len(film.deposits)} deposits, {film.total_area_mm2:.1f} mm²")
    for change in series.changes:
        print(f"visit {change.baseline_visit + 1} -> {change.followup_visit + 1}: "
              f"{change.category} ({change.declared})")
    return 0


def run_samples(args) -> int:
    """Handler of ``phantom samples``."""
    for line in generate_samples(args.out):
        print(line)
    return 0


def run_qc(args) -> int:
    """Handler of ``phantom qc``."""
    path = render_qc_picture(args.real, args.samples, args.out)
    print(f"{path}: {path.stat().st_size / 1e3:.0f} kB")
    return 0


# --- the shipped sample set -----------------------------------------------------------------

def generate_samples(out: str | Path) -> list[str]:
    """Write the sample set: a hand patient's three visits, a forearm and a lower leg.

    Deterministic: the same pixels and truth every time (DICOM UIDs are fresh).

    Returns
    -------
    list of str
        One line per written film.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    hand = make_series(SeriesSpec("hand", seed=2024, changes=("progression", "improvement"),
                                  n_deposits=7, spacing_mm=0.15, patient_id="PHANTOM-0001",
                                  cnr_range=(2.0, 60.0)))
    formats = [
        {"photometric": "MONOCHROME2", "modality": "DX", "spacing_attribute": "PixelSpacing",
         "transfer_syntax": JPEG2000Lossless},
        {"photometric": "MONOCHROME1", "modality": "CR", "spacing_attribute": "ImagerPixelSpacing",
         "magnification": 1.08, "transfer_syntax": RLELossless},
        {"photometric": "MONOCHROME1", "modality": "DX", "spacing_attribute": "PixelSpacing",
         "transfer_syntax": JPEG2000Lossless},
    ]
    written = write_series(hand, out, "hand_patient1", formats)
    rows = []
    for files, film, fmt in zip(written, hand.visits, formats):
        rows.append(_sample_row(files, film, fmt))
    forearm = make_film(PhantomSpec("forearm", seed=31, n_deposits=6, laterality="L",
                                    metal="screw", bits_stored=14, patient_id="PHANTOM-0002",
                                    study_date="2024-03-04", cnr_range=(2.0, 60.0)))
    fmt = {"photometric": "MONOCHROME2", "modality": "DX",
           "spacing_attribute": "ImagerPixelSpacing", "magnification": 1.12,
           "transfer_syntax": JPEG2000Lossless}
    rows.append(_sample_row(write_film(forearm, out, "forearm_patient2", **fmt), forearm, fmt))
    leg = make_film(PhantomSpec("lower_leg", seed=47, n_deposits=6, metal="wire",
                                bits_stored=16, patient_id="PHANTOM-0003",
                                study_date="2024-05-20", cnr_range=(2.0, 60.0)))
    fmt = {"photometric": "MONOCHROME1", "modality": "CR", "spacing_attribute": "PixelSpacing",
           "transfer_syntax": RLELossless}
    rows.append(_sample_row(write_film(leg, out, "lower_leg_patient3", **fmt), leg, fmt))
    changes = [f"| visit {c.baseline_visit + 1} → {c.followup_visit + 1} | "
               f"{c.baseline_area_mm2:.1f} | {c.followup_area_mm2:.1f} | "
               f"{c.change_pct:+.0f} % | {c.category} |" for c in hand.changes]
    readme = _README.format(command=SAMPLES_COMMAND, films="\n".join(rows),
                            changes="\n".join(changes))
    with atomic_output(out / "README.md") as tmp:
        Path(tmp).write_text(readme)
    for row in rows:
        lines.append(row)
    return lines


def _sample_row(files, film, fmt) -> str:
    r = film.radiograph
    spacing = fmt.get("spacing_attribute", "PixelSpacing")
    if spacing == "ImagerPixelSpacing":
        spacing += f" + ERMF {fmt.get('magnification', 1.1):g}"
    syntax = {str(JPEG2000Lossless): "JPEG 2000 lossless", str(RLELossless): "RLE lossless"}.get(
        str(fmt.get("transfer_syntax")), "uncompressed")
    return (f"| `{files.dicom.name}` | {r.metadata.body_part} {r.metadata.laterality} | "
            f"{r.metadata.study_date} | {fmt['modality']} {fmt['photometric']} | {spacing} "
            f"{r.spacing_mm[0]:g} mm | {film.bits_stored} | {syntax} | {len(film.deposits)} | "
            f"{film.total_area_mm2:.1f} |")


_README = """# Sample images

Phantom radiographs of calcinosis with exact ground truth, generated by calcitrack itself
(no patient data). Regenerate them with

    {command}

(byte-identical every time: pixels, truth and DICOM UIDs are derived from fixed seeds).

| film | body part | study date | modality, photometric | calibration | bits | encoding | deposits | truth area (mm²) |
|---|---|---|---|---|---|---|---|---|
{films}

`hand_patient1_v1..v3` are one phantom patient (PHANTOM-0001) filmed three times: the
deposits progress, then partly improve; each visit is repositioned (rotation, shift,
magnification) and exposed at another dose. True change between visits (±25 % rule):

| pair | baseline mm² | follow-up mm² | change | category |
|---|---|---|---|---|
{changes}

Files per film `NAME`:

- `NAME.dcm` — the film;
- `NAME.truth.png` — 16-bit deposit labels on the film's pixel grid (0 = none, k = deposit k);
- `NAME.anatomy.truth.png` — 0 background, 1 soft tissue, 2 bone, 3 lead or metal, 4 unexposed;
- `NAME.truth.csv` — one row per deposit: id, track id (same deposit across visits),
  morphology, region, fingertip, periarticular, area (px, mm²), CNR, centroid, size;
- `NAME.truth.json` — film-level truth and the definitions (CNR, truth mask, areas);
- `hand_patient1.series.json` — the visits and the true change category of each pair.

Definitions: a deposit's truth mask is its full-width-at-half-maximum extent in the noiseless
film; CNR is its mean contrast over that mask divided by the pixel noise in the soft tissue
1-4 mm around it; `area_mm2` is `area_px` times the pixel area. See `imaging/phantom/`.
"""


# --- the QC picture ------------------------------------------------------------------------

#: Sample films shown enlarged in the QC picture (their most conspicuous sizeable deposit),
#: and the crop side in mm.
QC_FILMS = ("hand_patient1_v1", "forearm_patient2", "lower_leg_patient3")
QC_CROP_MM = 40.0


def render_qc_picture(real: str | Path, samples: str | Path, out: str | Path) -> Path:
    """Draw the sample phantoms next to a real hand film, whole and enlarged.

    Top row: the real film and three phantoms at the same display height. Middle row: 40 mm
    crops at full resolution, the real film's metacarpophalangeal joints beside phantom
    deposits with their truth outline (red). Bottom row: one phantom deposit over the three
    visits of the serial hand set (progression, then partial improvement).
    """
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from imaging import read_radiograph
    from imaging.phantom import read_truth

    samples, out = Path(samples), Path(out)

    def window(pixels, where):
        lo, hi = np.percentile(pixels[where], (0.5, 99.7))
        return float(lo), float(hi)

    def crop(pixels, centre, spacing, *labels):
        half = int(QC_CROP_MM / 2 / spacing)
        r, c = (int(round(v)) for v in centre)
        r = min(max(r, half), pixels.shape[0] - half)
        c = min(max(c, half), pixels.shape[1] - half)
        box = (slice(r - half, r + half), slice(c - half, c + half))
        return (pixels[box],) + tuple(lab[box] for lab in labels)

    real_film = read_radiograph(real)
    films = {name: (read_radiograph(samples / f"{name}.dcm"), read_truth(samples / f"{name}.dcm"))
             for name in ("hand_patient1_v1", "hand_patient1_v2", "hand_patient1_v3",
                          "forearm_patient2", "lower_leg_patient3")}
    real_px = real_film.pixels
    top = [("real hand PA film (CR)", real_px, real_px > np.percentile(real_px, 12), None)]
    for name in ("hand_patient1_v1", "forearm_patient2", "lower_leg_patient3"):
        film, truth = films[name]
        exposed = (truth.anatomy != 4) & (truth.anatomy != 3)
        top.append((f"phantom {name}", film.pixels, exposed, truth.labels))
    aspects = [pixels.shape[1] / pixels.shape[0] for _, pixels, _, _ in top]
    fig = plt.figure(figsize=(11.0, 10.2), dpi=72)
    upper = fig.add_gridspec(1, 4, width_ratios=aspects, top=0.96, bottom=0.55, wspace=0.05)
    grid = fig.add_gridspec(2, 4, top=0.50, bottom=0.01, hspace=0.18, wspace=0.05)
    for i, (title, pixels, where, labels) in enumerate(top):
        ax = fig.add_subplot(upper[0, i])
        factor = 520.0 / pixels.shape[0]
        small = cv2.resize(np.asarray(pixels, np.float32), None, fx=factor, fy=factor,
                           interpolation=cv2.INTER_AREA)
        lo, hi = window(pixels, where)
        ax.imshow(small, cmap="gray", vmin=lo, vmax=hi)
        if labels is not None:
            marks = cv2.resize((labels > 0).astype(np.float32), small.shape[::-1],
                               interpolation=cv2.INTER_AREA)
            ax.contour(marks > 0, [0.5], colors="red", linewidths=0.6)
        ax.set_title(title.replace(" ", "\n", 1), fontsize=8)
        ax.set_axis_off()
    # middle row: real joints beside phantom deposits, same physical scale
    ax = fig.add_subplot(grid[0, 0])
    rows, cols = real_px.shape
    patch, = crop(real_px, (0.53 * rows, 0.47 * cols), real_film.spacing_mm[0])
    ax.imshow(patch, cmap="gray", vmin=np.percentile(patch, 0.5), vmax=np.percentile(patch, 99.7))
    ax.set_title(f"real film\n{QC_CROP_MM:.0f} mm crop (MCP joints)", fontsize=8)
    ax.set_axis_off()
    def conspicuous(deposit):
        return min(deposit.cnr, 25.0) * min(deposit.area_mm2, 30.0) ** 0.5

    shown = set()
    for i, name in enumerate(QC_FILMS, start=1):
        film, truth = films[name]
        fresh = [d for d in truth.deposits if d.morphology not in shown] or truth.deposits
        d = max(fresh, key=conspicuous)
        shown.add(d.morphology)
        patch, labels = crop(film.pixels, (d.centroid_row, d.centroid_col), film.spacing_mm[0],
                             truth.labels)
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(patch, cmap="gray", vmin=np.percentile(patch, 0.5),
                  vmax=np.percentile(patch, 99.7))
        ax.contour(labels > 0, [0.5], colors="red", linewidths=0.7)
        ax.set_title(f"{name}\n{d.morphology}, CNR {d.cnr:.1f}, {d.area_mm2:.1f} mm²",
                     fontsize=8)
        ax.set_axis_off()
    # bottom row: one deposit over the serial hand visits
    visits = [films[f"hand_patient1_v{v}"][1].deposits for v in (1, 2, 3)]
    common = set.intersection(*({d.track_id for d in deposits} for deposits in visits))
    candidates = [d for d in visits[1] if d.track_id in common]
    track = max([d for d in candidates if d.morphology not in shown] or candidates,
                key=conspicuous).track_id
    for i, name in enumerate(("hand_patient1_v1", "hand_patient1_v2", "hand_patient1_v3")):
        film, truth = films[name]
        d = next(d for d in truth.deposits if d.track_id == track)
        patch, labels = crop(film.pixels, (d.centroid_row, d.centroid_col), film.spacing_mm[0],
                             truth.labels)
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(patch, cmap="gray", vmin=np.percentile(patch, 0.5),
                  vmax=np.percentile(patch, 99.7))
        ax.contour(labels == d.deposit_id, [0.5], colors="red", linewidths=0.7)
        ax.set_title(f"visit {i + 1}, {film.metadata.study_date}\n{film.metadata.modality} "
                     f"{film.photometric.split()[0]}, {d.area_mm2:.1f} mm²", fontsize=8)
        ax.set_axis_off()
    ax = fig.add_subplot(grid[1, 3])
    ax.set_axis_off()
    ax.text(0.02, 0.5, "Phantoms: calcitrack phantom samples\n"
            "red: truth outline (FWHM extent)\n"
            "bottom: one deposit, three visits\n(progression, then partial improvement),\n"
            "each visit repositioned and re-exposed", fontsize=8, va="center")
    buffer = __import__("io").BytesIO()
    fig.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = __import__("io").BytesIO()
    image.save(png, format="PNG", optimize=True)
    with atomic_output(out) as tmp:
        Path(tmp).write_bytes(png.getvalue())
    return out


def main(argv=None) -> int:
    """Run the ``phantom`` subcommand on its own (``python -m pipelines.phantoms ...``)."""
    parser = argparse.ArgumentParser(prog="calcitrack")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["phantom", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

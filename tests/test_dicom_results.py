"""DICOM SEG and SR of the deposits and per-region burden: round trips through pydicom and
highdicom."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from imaging.burden import assign_deposits, region_burden
from imaging.deposits import find_deposits
from imaging.dicom_results import NotADicomSource, deposit_segmentation, measurement_report
from imaging.errors import CalcitrackError
from imaging.io import read_radiograph
from imaging.phantom import PhantomSpec, make_film, write_film
from imaging.regions import region_map


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom_results")
    film = make_film(PhantomSpec("forearm", seed=3, spacing_mm=0.4, n_deposits=4,
                                 cnr_range=(20, 60), size_range_mm=(3, 8)))
    files = write_film(film, folder, "forearm")
    path = files.dicom
    radiograph = read_radiograph(path)
    findings = find_deposits(radiograph)
    regions = region_map(radiograph, findings)
    infos = assign_deposits(regions, findings, radiograph)
    rows = region_burden(regions, findings, infos, calibrated=radiograph.is_calibrated)
    return pydicom.dcmread(path), radiograph, findings, infos, rows, folder


def test_seg_round_trip(analysed):
    source, _, findings, infos, _, folder = analysed
    assert findings.deposits, "the test film needs deposits"
    seg = deposit_segmentation(source, findings.labels, infos=infos)
    path = folder / "seg.dcm"
    seg.save_as(path)
    back = hd.seg.segread(path)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert back.SegmentSequence[0].SegmentLabel == "Calcinosis"
    assert back.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "82650004"
    assert back.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID \
        == source.SOPInstanceUID
    mask = back.pixel_array
    assert mask.shape[-2:] == findings.labels.shape
    np.testing.assert_array_equal(mask.reshape(findings.labels.shape) > 0, findings.labels > 0)


def test_seg_per_region(analysed):
    source, _, findings, infos, _, _ = analysed
    seg = deposit_segmentation(source, findings.labels, infos=infos, per_region=True)
    labels = sorted(item.SegmentLabel for item in seg.SegmentSequence)
    assert labels == sorted(f"Calcinosis {r}" for r in {i.region for i in infos})


def test_sr_round_trip(analysed):
    source, radiograph, findings, infos, rows, folder = analysed
    seg = deposit_segmentation(source, findings.labels)
    sr = measurement_report(source, rows, segmentation=seg)
    path = folder / "sr.dcm"
    sr.save_as(path)
    back = hd.sr.srread(path)
    groups = back.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(rows)
    total = groups[-1]
    area = total.get_measurements(name=pydicom.sr.codedict.codes.SCT.Area)[0]
    assert area.unit.value == "mm2"
    assert area.value == pytest.approx(rows[-1]["area_mm2"], rel=1e-6)
    assert seg.SOPInstanceUID in str(back.ContentSequence)     # groups reference the SEG
    evidence = {s.ReferencedSOPInstanceUID
                for study in back.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for s in series.ReferencedSOPSequence}
    assert {source.SOPInstanceUID, seg.SOPInstanceUID} <= evidence


def test_the_same_analysis_gives_the_same_instances(analysed):
    """Derived UIDs: a rerun does not make a second SEG/SR in the archive; any change does."""
    source, _, findings, _, rows, _ = analysed
    seg, again = (deposit_segmentation(source, findings.labels, run_key="abc") for _ in range(2))
    assert (seg.SOPInstanceUID, seg.SeriesInstanceUID) == (again.SOPInstanceUID,
                                                           again.SeriesInstanceUID)
    fewer = np.where(findings.labels == 1, 0, findings.labels)
    for other in (deposit_segmentation(source, findings.labels, run_key="xyz"),
                  deposit_segmentation(source, fewer, run_key="abc")):
        assert other.SOPInstanceUID != seg.SOPInstanceUID
    sr, sr_again = (measurement_report(source, rows, segmentation=seg, run_key="abc")
                    for _ in range(2))
    assert sr.SOPInstanceUID == sr_again.SOPInstanceUID != seg.SOPInstanceUID
    changed = [*rows[:-1], {**rows[-1], "n_deposits": rows[-1]["n_deposits"] + 1}]
    assert measurement_report(source, changed, segmentation=seg,
                              run_key="abc").SOPInstanceUID != sr.SOPInstanceUID
    assert len({sr.SOPInstanceUID, seg.SOPInstanceUID, source.SOPInstanceUID}) == 3


def test_sr_uncalibrated_reports_pixels(analysed):
    source, _, findings, infos, rows, _ = analysed
    # The same rows as an uncalibrated film would give them: no mm² values.
    px_rows = [{k: (None if k.endswith("_mm2") else v) for k, v in row.items()} for row in rows]
    sr = measurement_report(source, px_rows)
    values = [str(e.value) for e in sr.iterall() if e.keyword in ("TextValue", "CodeValue")]
    assert "{pixels}" in values and "mm2" not in values
    assert "region all (areas in pixels)" in values


def test_png_film_gets_no_dicom_outputs(analysed):
    _, _, findings, _, rows, _ = analysed
    with pytest.raises(NotADicomSource) as caught:
        deposit_segmentation(None, findings.labels)
    assert isinstance(caught.value, CalcitrackError)
    with pytest.raises(NotADicomSource):
        measurement_report({"not": "a dataset"}, rows)


def test_seg_rejects_labels_of_another_grid(analysed):
    source, _, findings, _, _, _ = analysed
    with pytest.raises(ValueError, match="do not match"):
        deposit_segmentation(source, findings.labels[:-3])

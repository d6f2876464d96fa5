"""Region maps: automatic hand and limb regions against phantom truth, and GeoJSON regions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from imaging import read_radiograph
from imaging.deposits import find_deposits
from imaging.phantom import PhantomSpec, make_film
from imaging.radiograph import Radiograph, SpacingSource
from imaging.regions import HAND_REGIONS, LIMB_REGIONS, RegionError, read_user_regions, region_map


@pytest.fixture(scope="module")
def hand():
    film = make_film(PhantomSpec("hand", seed=4, spacing_mm=0.3, n_deposits=10, laterality="L"))
    return film, find_deposits(film.radiograph)


def _agreement(film, regions):
    got = regions.at_source([d.centroid_row for d in film.deposits],
                            [d.centroid_col for d in film.deposits])
    return np.mean([g == d.region for g, d in zip(got, film.deposits)])


def test_hand_regions_match_truth(hand):
    film, findings = hand
    regions = region_map(film.radiograph, findings)
    assert regions.kind == "hand" and regions.names == HAND_REGIONS
    assert regions.labels.shape == findings.grid.values.shape
    assert _agreement(film, regions) >= 0.9
    tips = regions.fingertip_at_source([d.centroid_row for d in film.deposits],
                                       [d.centroid_col for d in film.deposits])
    truth_tips = np.array([d.fingertip and d.morphology != "acral" for d in film.deposits])
    assert np.all(tips[truth_tips])
    assert regions.joint_distance_mm is not None


def test_real_hand_regions_lie_on_their_fingers(radiographs):
    """The normal hand PA (right hand, thumb on the left of the film): the air under the
    electronic shutter at the top glows with scatter and must not join the body, or the
    digits are looked for in air."""
    film = read_radiograph(radiographs / "hand_pa_cr_j2k_lossless.dcm")
    findings = find_deposits(film)
    body = findings.grid.mask_to_source(findings.anatomy.body)
    below_shutter = slice(300, 420)                       # 2-16 mm below the shutter's edge
    assert body[below_shutter].mean() < 0.01
    regions = region_map(film, findings)
    assert regions.kind == "hand"
    columns = []
    for number in range(1, 6):
        rows, cols = np.nonzero(regions.labels == number)
        assert rows.size, f"digit{number} is empty"
        assert findings.anatomy.body[rows, cols].all()
        columns.append(cols.mean())
    thumb, fingers = columns[0], columns[1:]
    assert thumb < min(fingers) and fingers == sorted(fingers)


def test_hand_recognised_without_body_part(hand):
    film, findings = hand
    anonymous = dataclasses.replace(film.radiograph, metadata=dataclasses.replace(
        film.radiograph.metadata, body_part=None))
    assert region_map(anonymous, findings).kind == "hand"


def test_forearm_thirds_match_truth():
    film = make_film(PhantomSpec("forearm", seed=2, spacing_mm=0.4, n_deposits=8))
    regions = region_map(film.radiograph, find_deposits(film.radiograph))
    assert regions.kind == "limb" and regions.names == LIMB_REGIONS
    assert _agreement(film, regions) >= 0.9


# --- user regions --------------------------------------------------------------------------

def _write(tmp_path, document, name="regions.geojson"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _square(name, x0, y0, x1, y1):
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "properties": {"name": name},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _collection(*features, **extra):
    return {"type": "FeatureCollection", "features": list(features), **extra}


def test_user_regions_in_pixels_and_mm(tmp_path, hand):
    film, findings = hand
    rows, cols = film.radiograph.shape
    path = _write(tmp_path, _collection(_square("left", 0, 0, cols // 2, rows - 1),
                                        _square("right", cols // 2, 0, cols - 1, rows - 1)))
    regions = region_map(film.radiograph, findings, user_regions=read_user_regions(path))
    assert regions.kind == "user" and regions.names[:2] == ("left", "right")
    got = regions.at_source([rows // 2, rows // 2], [cols // 4, 3 * cols // 4])
    assert list(got) == ["left", "right"]
    s = film.radiograph.spacing_mm[1]
    mm = _write(tmp_path, _collection(_square("left", 0, 0, cols // 2 * s, (rows - 1) * s),
                                      units="mm"), "mm.geojson")
    in_mm = region_map(film.radiograph, findings, user_regions=read_user_regions(mm))
    assert in_mm.at_source([rows // 2], [cols // 4])[0] == "left"
    assert in_mm.at_source([rows // 2], [3 * cols // 4])[0] in ("unassigned",)


@pytest.mark.parametrize("document, message", [
    ("{not json", "not valid JSON"),
    ({"type": "Feature"}, "FeatureCollection"),
    (_collection({"type": "Feature", "properties": {"name": "a"},
                  "geometry": {"type": "Point", "coordinates": [1, 2]}}), "Point"),
    (_collection({**_square("x", 0, 0, 5, 5), "properties": {}}), "has no name"),
    (_collection(_square("a", 0, 0, 5, 5), _square("a", 5, 5, 9, 9)), "used twice"),
    (_collection(_square("all", 0, 0, 5, 5)), "reserved"),
    (_collection({"type": "Feature", "properties": {"name": "open"}, "geometry": {
        "type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 5]]]}}), "closed"),
    (_collection(_square("a", 0, 0, 5, 5), units="inch"), "units"),
])
def test_invalid_region_files(tmp_path, document, message):
    with pytest.raises(RegionError, match=message) as caught:
        read_user_regions(_write(tmp_path, document))
    assert "regions.geojson" in str(caught.value)


def test_regions_outside_the_film_or_in_mm_without_spacing(tmp_path, hand):
    film, findings = hand
    rows, cols = film.radiograph.shape
    outside = read_user_regions(_write(tmp_path, _collection(_square("big", 0, 0, cols + 50, 10))))
    with pytest.raises(RegionError, match="outside the film"):
        region_map(film.radiograph, findings, user_regions=outside)
    uncalibrated = Radiograph(film.radiograph.pixels, None, SpacingSource.NONE, "film.png")
    in_mm = read_user_regions(_write(tmp_path, _collection(_square("a", 0, 0, 5, 5), units="mm")))
    with pytest.raises(RegionError, match="no pixel spacing"):
        in_mm.rasterize(uncalibrated, findings.grid.values.shape)

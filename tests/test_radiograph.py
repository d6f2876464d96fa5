"""The Radiograph value and the calibration rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imaging import Radiograph, SpacingSource
from imaging.radiograph import PLAUSIBLE_SPACING_MM, resolve_spacing

LO, HI = PLAUSIBLE_SPACING_MM
any_number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(min_value=LO, max_value=HI))
pairs = st.one_of(st.none(), st.tuples(any_number, any_number).map(list))


def _plausible(pair):
    return (pair is not None and all(v is not None and math.isfinite(v) and LO <= v <= HI
                                     for v in pair))


@given(pixel=pairs, imager=pairs, ermf=any_number, user=any_number)
def test_calibration_rules(pixel, imager, ermf, user):
    spacing, source, _ = resolve_spacing(pixel, imager, ermf, user)
    if user is not None and math.isfinite(user) and LO <= user <= HI:
        assert source is SpacingSource.USER and spacing == (user, user)
    elif _plausible(pixel):
        assert source is SpacingSource.PIXEL_SPACING and spacing == tuple(pixel)
    elif _plausible(imager):
        assert source in (SpacingSource.DETECTOR, SpacingSource.DETECTOR_ERMF, SpacingSource.NONE)
        if source is SpacingSource.DETECTOR_ERMF:
            assert spacing == pytest.approx([v / ermf for v in imager])
        elif source is SpacingSource.DETECTOR:
            assert spacing == tuple(imager)
    else:
        assert source is SpacingSource.NONE and spacing is None
    if spacing is not None:
        assert all(LO <= v <= HI for v in spacing)


def test_ermf_divides_imager_spacing():
    spacing, source, notes = resolve_spacing(None, [0.2, 0.2], 1.25)
    assert source is SpacingSource.DETECTOR_ERMF and spacing == pytest.approx((0.16, 0.16))
    assert notes == ()


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), 0.001, 12.0])
def test_implausible_pixel_spacing_is_missing_with_a_note(bad):
    spacing, source, notes = resolve_spacing([bad, bad])
    assert spacing is None and source is SpacingSource.NONE and "not a plausible" in notes[0]


def test_radiograph_is_read_only_and_consistent():
    pixels = np.ones((4, 5), np.uint16)
    film = Radiograph(pixels, (0.1, 0.2), SpacingSource.USER, "x.png")
    assert film.pixels.dtype == np.float32 and not film.pixels.flags.writeable
    assert film.pixel_area_mm2 == pytest.approx(0.02)
    with pytest.raises(ValueError):
        Radiograph(pixels, None, SpacingSource.USER, "x.png")
    with pytest.raises(ValueError):
        Radiograph(np.ones(3), None, SpacingSource.NONE, "x.png")

"""Unit names: normalise the spellings found in microscope files and convert lengths to nm."""

from __future__ import annotations

__all__ = ["LENGTH_IN_NM", "NGFF_UNITS", "TIME_UNITS", "normalise_unit"]

#: Length units daskreg converts, with the factor that turns a value in that unit into nm.
LENGTH_IN_NM: dict[str, float] = {
    "m": 1e9,
    "cm": 1e7,
    "mm": 1e6,
    "µm": 1e3,
    "nm": 1.0,
    "Å": 0.1,
    "pm": 1e-3,
}

#: Time units a frame axis may carry; only these make a physical ``frame`` coordinate.
TIME_UNITS = frozenset({"h", "min", "s", "ms", "µs", "ns"})

#: The UDUNITS-2 names OME-NGFF gives these units (its axes' ``"unit"``), by canonical name.
NGFF_UNITS: dict[str, str] = {
    "m": "meter",
    "cm": "centimeter",
    "mm": "millimeter",
    "µm": "micrometer",
    "nm": "nanometer",
    "Å": "angstrom",
    "pm": "picometer",
    "h": "hour",
    "min": "minute",
    "s": "second",
    "ms": "millisecond",
    "µs": "microsecond",
    "ns": "nanosecond",
}

# Keys are lower case: files disagree on case ("NM", "Nm"), but no unit we read depends on it.
_ALIASES: dict[str, str] = {
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "um": "µm",
    "μm": "µm",  # Greek mu (U+03BC), as opposed to the micro sign in the canonical name
    "\\u00b5m": "µm",  # ImageJ writes the micro sign as this escape in its description
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "nanometer": "nm",
    "nanometers": "nm",
    "a": "Å",
    "angstrom": "Å",
    "angstroms": "Å",
    "picometer": "pm",
    "sec": "s",
    "second": "s",
    "seconds": "s",
    "us": "µs",
    "pixel": "px",
    "pixels": "px",
    "μs": "µs",
    # OME-Zarr spells every unit out (UDUNITS-2 names).
    **{name: canonical for canonical, name in NGFF_UNITS.items()},
}

# Lower-cased canonical names; the Angstrom sign U+212B also lower-cases to "å".
_CANONICAL = {name.lower(): name for name in (*LENGTH_IN_NM, *TIME_UNITS)}

# Spellings that mean the source stores no unit.
_MISSING = frozenset({"", "<undefined>", "undefined", "none"})


def normalise_unit(unit: object) -> str:
    """Return the canonical spelling of a unit, or ``""`` when the source gives none.

    Parameters
    ----------
    unit : object
        The unit as a reader found it: a string, ``None`` or a HyperSpy ``Undefined``.

    Returns
    -------
    str
        ``"nm"``, ``"µm"``, ``"s"``, ``"px"`` ... for known units; any other string
        unchanged (e.g. ``"1 / nm"``); ``""`` when the source has no unit.

    Examples
    --------
    >>> normalise_unit("n_m"), normalise_unit("um"), normalise_unit(None)
    ('nm', 'µm', '')
    """
    if unit is None:
        return ""
    # Berkeley EMD spells units with underscores between letters ("n_m").
    text = str(unit).strip().replace("_", "")
    key = text.lower()
    if key in _MISSING:
        return ""
    return _ALIASES.get(key) or _CANONICAL.get(key) or text

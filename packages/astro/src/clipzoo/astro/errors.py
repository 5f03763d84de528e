"""The one exception the astro readers raise for a bad input file."""


class AstroReadError(ValueError):
    """An input that cannot be read as what it claims to be (truncated FITS, missing HDU or column,
    no finite flux, ...). The message says what is wrong; sources record it with ``report.skip``."""

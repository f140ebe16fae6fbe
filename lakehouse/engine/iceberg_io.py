"""pyiceberg's local file IO for a home that may have been moved or copied (see iceberg.relocate)."""

from __future__ import annotations

from pyiceberg.io.pyarrow import PyArrowFileIO

from lakehouse.engine.iceberg import relocate


class HomeFileIO(PyArrowFileIO):
    """pyiceberg's local file IO, reading and writing a moved or copied home in its new place.

    The paths recorded in the catalog stay as they were written (Iceberg metadata is immutable);
    every one is mapped to the current home when a file is opened, so nothing is ever read from or
    written into the old home.
    """

    def parse_location(self, location: str, properties=None) -> tuple[str, str, str]:  # type: ignore[override]
        scheme, netloc, path = PyArrowFileIO.parse_location(location, properties or self.properties)
        if scheme == "file":
            path = relocate(path, self.properties)
        return scheme, netloc, path

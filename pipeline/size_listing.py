"""A folder's plain files by name with their sizes, held as two arrays rather than a dict of objects.

At a job start the driver lists the part folders (`tokens`, `rejects`, `rows`: a million files each at
a million shards) to check every committed shard's parts. As a dict of names to `Listed` that is
~0.2 KB a file; as an Arrow string array of the names (their bytes and an offset) and a numpy array
of the sizes it is ~40 B. `SizeListing` reads as the mapping `{name: Listed(size, "")}` (a lookup of
one name scans the names: for many at once, `sizes_of`) and is checked in bulk with Arrow compute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

MISSING = -2  # sizes_of: the name is not listed
UNKNOWN = -1  # the listing gave no size
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Listed:
    """A plain file of a listing: its size and its stamp (size plus the listing's version fields)."""

    size: int | None
    stamp: str


class SizeListing(Mapping):
    """names: the file names (pa.StringArray, in listing order); sizes: int64, UNKNOWN where not given."""

    __slots__ = ("names", "sizes")

    def __init__(self, names: pa.Array, sizes: np.ndarray):
        self.names, self.sizes = names, sizes

    @classmethod
    def build(cls, entries: Iterable[tuple[str, int | None]]) -> SizeListing:
        """From (name, size) pairs, converted 65,536 at a time (never a list of every name's string)."""
        chunks, size_chunks, names, sizes = [], [], [], []

        def flush():
            chunks.append(pa.array(names, pa.string()))
            size_chunks.append(np.array(sizes, dtype=np.int64))
            names.clear()
            sizes.clear()

        for name, size in entries:
            if not name.isascii() and not _utf8(name):
                log.warning("file %r: its name is not UTF-8; left out of the listing (and left alone)", name)
                continue
            names.append(name)
            sizes.append(UNKNOWN if size is None else size)
            if len(names) >= _CHUNK:
                flush()
        flush()
        return cls(pa.concat_arrays(chunks), np.concatenate(size_chunks))

    def sizes_of(self, names: pa.Array) -> np.ndarray:
        """The sizes of `names` (int64; MISSING: not listed, UNKNOWN: listed without a size)."""
        index = pc.index_in(names, value_set=self.names)
        found = index.is_valid().to_numpy(zero_copy_only=False)
        at = index.fill_null(0).to_numpy(zero_copy_only=False)
        return np.where(found, self.sizes[at] if len(self.sizes) else UNKNOWN, MISSING)

    def select(self, mask: pa.Array) -> list[str]:
        """The names where `mask` (a boolean array over `names`) is true."""
        return self.names.filter(mask).to_pylist()

    def __getitem__(self, name: str) -> Listed:
        at = pc.index(self.names, name).as_py()
        if at < 0:
            raise KeyError(name)
        size = int(self.sizes[at])
        return Listed(None if size == UNKNOWN else size, "")

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.names), _CHUNK):
            yield from self.names.slice(start, _CHUNK).to_pylist()

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and pc.index(self.names, name).as_py() >= 0


def _utf8(name: str) -> bool:
    try:
        name.encode()
        return True
    except UnicodeEncodeError:  # a name with bytes that are not UTF-8 (os.scandir's surrogate escapes)
        return False

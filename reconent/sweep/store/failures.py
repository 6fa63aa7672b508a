"""Environmental failures of points without a row (out of memory, I/O, network), for `sweep status`:
`_failures/<kind>/<point_id>.json`, `_`-prefixed so that no reader of the rows sees them."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow.fs as pafs

from .layout import _kind


class Failures:
    """Failure records (needs Layout)."""

    def record_failure(self, kind: str, pid: str, error: str) -> None:
        """Note that point `pid` failed for an environmental reason (no part was written): for `sweep status`.

        Best effort: the storage may be what failed. The file is `_`-prefixed, invisible to readers."""
        try:
            self._put(self.path("_failures", kind), f"{pid}.json",
                      json.dumps({"error": error[:2000], "at": datetime.now(timezone.utc).isoformat()}).encode())
        except Exception:  # noqa: BLE001
            pass

    def failures(self, kind: str) -> dict[str, str]:
        """{point_id: error} of the environmental failures recorded for `kind` (points may have finished since)."""
        out = {}
        sel = pafs.FileSelector(self.path("_failures", _kind(kind)), allow_not_found=True)
        for i in self.fs.get_file_info(sel):
            if i.type == pafs.FileType.File and i.base_name.endswith(".json") and not i.base_name.startswith("_"):
                try:
                    with self.fs.open_input_stream(i.path) as f:
                        out[i.base_name[:-5]] = json.loads(f.read())["error"]
                except Exception:  # noqa: BLE001
                    continue
        return out

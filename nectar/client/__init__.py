"""A client of the Datanectar API: submit many runs and follow them, download every finished output.

:mod:`~nectar.client.api` is the HTTP client (one retry loop for every call); :mod:`~nectar.client.batch`
submits a CSV's rows and follows them; :mod:`~nectar.client.download` fetches finished outputs;
:mod:`~nectar.client.progress` shows how far either got.
"""

from __future__ import annotations

from nectar.client.api import Accepted, ApiError, Backoff, NectarClient, split_ref
from nectar.client.batch import RowResult, follow_rows, prefix_rows, read_rows, row_counts, submit_rows
from nectar.client.download import DownloadReport, download
from nectar.client.progress import Progress

__all__ = [
    "Accepted",
    "ApiError",
    "Backoff",
    "DownloadReport",
    "NectarClient",
    "Progress",
    "RowResult",
    "download",
    "follow_rows",
    "prefix_rows",
    "read_rows",
    "row_counts",
    "split_ref",
    "submit_rows",
]

"""Model downloads behind ``scripts/download_models.py``, split along their seams.

* :mod:`scripts.downloads.hubs` -- network access: hub endpoints, the
  reachability probes, ModelScope and Hugging Face snapshots, plain file
  downloads; every request bounded by a deadline.
* :mod:`scripts.downloads.staging` -- the file system side: hidden
  ``.<name>.partial`` directories, the atomic rename into place, the
  completeness check before it.
* :mod:`scripts.downloads.models` -- one fetcher per model (``fetch_paraformer``,
  ``fetch_sensevoice``, ...), each a hub download into a staging directory that
  is installed once complete.

``DownloadError`` is here because all three raise it. The modules log to the
one ``download_models`` logger, so the tool's lines read the same whichever
module writes them. Entry point: ``scripts/download_models.py`` (the CLI).
Production code never imports this package.
"""

__all__ = ["DownloadError"]


class DownloadError(Exception):
    """A model could not be fetched; the message says why and what to do."""

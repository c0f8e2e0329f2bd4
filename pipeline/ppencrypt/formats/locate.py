"""From a path or URL to where the dataset lives: the one place that knows both kinds of
Location, so neither knows the other (location.py holds the interface and the local folder,
remote.py the URLs).

    loc = open_location("out/fm")                    # LocalDir
    loc = open_location("file:///data/fm")           # LocalDir: file:// URLs are local folders
    loc = open_location("s3://bucket/datasets/fm")   # RemoteDir (s3fs), likewise gs:// and https://
"""

from __future__ import annotations

import os

from .location import LocalDir, Location, is_url, local_path
from .remote import RemoteDir


def open_location(target: str | os.PathLike | Location, cache=None) -> Location:
    """The Location of a path or URL. ``cache`` (cache.ShardCache) keeps a URL's verified
    files on local disk; a local folder needs none."""
    if isinstance(target, Location):
        return target
    if not is_url(target):
        return LocalDir(local_path(target))
    return RemoteDir(str(target), cache)

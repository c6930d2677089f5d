"""The lake itself: root, zones, partition paths and the object-store layer.

Knows nothing of Dagster, Spark or any domain, so every other room can use it.
"""
from lake_assets.lake.layout import PartitionStyle, partition_path
from lake_assets.lake.storage import LakeFile, LakeStorage

__all__ = ["LakeFile", "LakeStorage", "PartitionStyle", "partition_path"]

"""The lake as a Dagster resource: one storage layer for sensors, ops, assets and checks."""
from __future__ import annotations

from functools import cached_property

from dagster import ConfigurableResource
from pydantic import Field

from lake_assets.lake import LakeStorage


class LakeResource(ConfigurableResource):
    """The lake root (a folder or ``s3://bucket/prefix``) and how Spark reaches it."""

    root: str = Field(description="LAKE_ROOT: a local folder or s3://bucket/prefix")
    spark_s3_scheme: str | None = Field(
        default=None,
        description="LAKE_SPARK_S3_SCHEME: 's3a' (or 's3' on EMR) when Spark has an S3 "
        "filesystem; unset, S3 data crosses through Arrow",
    )
    endpoint_url: str | None = Field(default=None, description="overrides AWS_ENDPOINT_URL")
    claimed_raw_folders: list[str] = Field(
        default_factory=list,
        description="raw/ folders some landing zone reads (from every domain, when definitions are "
        "built): a catch-all landing zone leaves their files to their owner",
    )

    @classmethod
    def from_env(cls, root: str | None = None, claimed_raw_folders: list[str] | None = None) -> "LakeResource":
        """``LAKE_ROOT`` (or ``root``) and ``LAKE_SPARK_S3_SCHEME``, as the code location reads them."""
        import os

        from lake_assets import settings

        return cls(root=root or settings.lake_root(),
                   spark_s3_scheme=os.environ.get("LAKE_SPARK_S3_SCHEME") or None,
                   claimed_raw_folders=list(claimed_raw_folders or []))

    @cached_property
    def storage(self) -> LakeStorage:
        return LakeStorage(self.root, endpoint_url=self.endpoint_url,
                           spark_s3_scheme=self.spark_s3_scheme)

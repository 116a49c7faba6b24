"""Tables of the file catalog, all on :data:`metadata` (the ``DataManagement`` schema).

Designed for ~10M files and ~20M replicas on MariaDB:

* directories are looked up by ``path_hash`` (sha1 of the path, unique), files by
  ``(dir_id, name)`` (unique), replicas by ``(file_id, se_id)`` (primary key);
* ``fc_dir_closure`` holds every (ancestor, descendant, depth) pair of directories, so subtree
  queries (metadata inheritance, sizes, path restrictions) are indexed joins, never ``LIKE``;
* ``fc_dir_usage`` keeps per-directory counters (``se_id`` 0 = logical files, otherwise the SE's
  replicas), updated in the same transaction as the namespace, so sizes never scan files;
* metadata values sit in one table per owner kind (directories, files) with one typed column
  per field type and an index ``(field, value)`` per type;
* ancestry stores direct parents only (``depth`` 1); deeper generations are walked level by
  level in bulk.

Example::

    >>> sorted(t for t in metadata.tables if t.startswith("fc_dir"))
    ['fc_dir_closure', 'fc_dir_meta', 'fc_dir_usage', 'fc_directories']
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import UTCDateTime

metadata = sa.MetaData()

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid needs INTEGER
#: path columns: long enough for deep LFNs; never indexed themselves (the hash is)
PATH_LENGTH = 1024
NAME_LENGTH = 255

directories = sa.Table(
    "fc_directories",
    metadata,
    sa.Column("dir_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("parent_id", IdType, sa.ForeignKey("fc_directories.dir_id"), nullable=True,
              index=True),
    sa.Column("path", sa.String(PATH_LENGTH), nullable=False),
    sa.Column("path_hash", sa.String(40), nullable=False, unique=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(64), nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("modified", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(32), nullable=False, default="AprioriGood"),
)

dir_closure = sa.Table(
    "fc_dir_closure",
    metadata,
    sa.Column("ancestor_id", IdType, sa.ForeignKey("fc_directories.dir_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("descendant_id", IdType,
              sa.ForeignKey("fc_directories.dir_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("depth", sa.Integer, nullable=False),
    sa.Index("ix_fc_closure_descendant", "descendant_id", "depth"),
)

storage_elements = sa.Table(
    "fc_storage_elements",
    metadata,
    sa.Column("se_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
)

files = sa.Table(
    "fc_files",
    metadata,
    sa.Column("file_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("dir_id", IdType, sa.ForeignKey("fc_directories.dir_id"), nullable=False),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=True),
    sa.Column("checksum_type", sa.String(16), nullable=True),
    sa.Column("guid", sa.String(64), nullable=False, unique=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(64), nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False, index=True),
    sa.Column("modified", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(32), nullable=False, default="AprioriGood"),
    sa.UniqueConstraint("dir_id", "name", name="uq_fc_files_dir_name"),
)

replicas = sa.Table(
    "fc_replicas",
    metadata,
    sa.Column("file_id", IdType, sa.ForeignKey("fc_files.file_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("se_id", sa.Integer, sa.ForeignKey("fc_storage_elements.se_id"),
              primary_key=True),
    sa.Column("pfn", sa.String(PATH_LENGTH), nullable=False, default=""),
    sa.Column("status", sa.String(32), nullable=False, default="AprioriGood"),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Index("ix_fc_replicas_se", "se_id", "file_id"),
)

#: per-directory counters of the directory's own files (not its subdirectories):
#: se_id 0 = logical (files, sizes), otherwise replicas on that SE
dir_usage = sa.Table(
    "fc_dir_usage",
    metadata,
    sa.Column("dir_id", IdType, sa.ForeignKey("fc_directories.dir_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("se_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False, default=0),
    sa.Column("files", sa.BigInteger, nullable=False, default=0),
)

meta_fields = sa.Table(
    "fc_meta_fields",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)


def _meta_table(name: str, owner_col: str, owner_table: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column(owner_col, IdType, sa.ForeignKey(f"{owner_table}", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("field", sa.String(64), sa.ForeignKey("fc_meta_fields.name"),
                  primary_key=True),
        sa.Column("v_int", sa.BigInteger, nullable=True),
        sa.Column("v_float", sa.Float, nullable=True),
        sa.Column("v_str", sa.String(255), nullable=True),
        sa.Column("v_date", UTCDateTime, nullable=True),
        sa.Index(f"ix_{name}_int", "field", "v_int", owner_col),
        sa.Index(f"ix_{name}_float", "field", "v_float", owner_col),
        sa.Index(f"ix_{name}_str", "field", "v_str", owner_col),
        sa.Index(f"ix_{name}_date", "field", "v_date", owner_col),
    )


dir_meta = _meta_table("fc_dir_meta", "dir_id", "fc_directories.dir_id")
file_meta = _meta_table("fc_file_meta", "file_id", "fc_files.file_id")

datasets = sa.Table(
    "fc_datasets",
    metadata,
    sa.Column("dataset_id", IdType, primary_key=True, autoincrement=True),
    sa.Column("dir_id", IdType, sa.ForeignKey("fc_directories.dir_id"), nullable=False),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(64), nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("modified", UTCDateTime, nullable=False),
    sa.Column("total_size", sa.BigInteger, nullable=False, default=0),
    sa.Column("n_files", sa.BigInteger, nullable=False, default=0),
    sa.Column("dataset_hash", sa.String(32), nullable=False, default=""),
    sa.UniqueConstraint("dir_id", "name", name="uq_fc_datasets_dir_name"),
)

dataset_files = sa.Table(
    "fc_dataset_files",
    metadata,
    sa.Column("dataset_id", IdType, sa.ForeignKey("fc_datasets.dataset_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("file_id", IdType, sa.ForeignKey("fc_files.file_id", ondelete="CASCADE"),
              primary_key=True),
)

ancestry = sa.Table(
    "fc_ancestry",
    metadata,
    sa.Column("file_id", IdType, sa.ForeignKey("fc_files.file_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("ancestor_id", IdType, sa.ForeignKey("fc_files.file_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Index("ix_fc_ancestry_ancestor", "ancestor_id", "file_id"),
)

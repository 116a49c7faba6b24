"""The ``Transfer`` schema: associations, transfers and their attempts, data movers, data files.

Example::

    >>> from core.db import init_schema, make_engine
    >>> init_schema(make_engine("sqlite://"), TRANSFER_SCHEMA)
    0
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import Schema, UTCDateTime

metadata = sa.MetaData()

associations = sa.Table(
    "xfer_associations", metadata,
    sa.Column("association_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("protocol", sa.String(16), nullable=False),
    sa.Column("host", sa.String(255), nullable=False, default=""),
    sa.Column("port", sa.Integer, nullable=True),
    sa.Column("username", sa.String(128), nullable=False, default=""),
    sa.Column("directory", sa.String(1024), nullable=False, default=""),
    #: JSON object of the protocol options (passive, umask, overwrite, mkdir, host key, ...)
    sa.Column("options", sa.Text, nullable=False, default="{}"),
    #: Fernet token of {"password", "private_key", "passphrase"} (never in clear)
    sa.Column("secret", sa.LargeBinary, nullable=True),
    sa.Column("secret_kinds", sa.String(64), nullable=False, default=""),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.UniqueConstraint("owner", "name", name="uq_xfer_assoc_owner_name"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

transfers = sa.Table(
    "xfer_transfers", metadata,
    sa.Column("transfer_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(64), nullable=False, index=True),
    sa.Column("owner_group", sa.String(64), nullable=False),
    sa.Column("vo", sa.String(64), nullable=True),
    sa.Column("association_id", sa.Integer, nullable=True),
    sa.Column("association", sa.String(128), nullable=False),
    #: "put" (to the remote host) or "get" (from it into the spool)
    sa.Column("direction", sa.String(8), nullable=False),
    #: put: "spool", "lfn", "job", "se"; get: "remote"
    sa.Column("source_kind", sa.String(8), nullable=False),
    sa.Column("source", sa.String(2048), nullable=False),
    sa.Column("target", sa.String(1024), nullable=False),
    sa.Column("spool_path", sa.String(1024), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("checksum", sa.String(16), nullable=True),
    sa.Column("overwrite", sa.Boolean, nullable=False, default=False),
    sa.Column("sync", sa.Boolean, nullable=False, default=False),
    sa.Column("retry_count", sa.Integer, nullable=False),
    sa.Column("retry_frequency", sa.Integer, nullable=False),
    sa.Column("mail_to", sa.String(255), nullable=True),
    sa.Column("on_success", sa.Boolean, nullable=False, default=False),
    sa.Column("on_failure", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("bytes_done", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Index("ix_xfer_transfers_status_not_before", "status", "not_before"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

attempts = sa.Table(
    "xfer_attempts", metadata,
    sa.Column("attempt_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("transfer_id", sa.Integer,
              sa.ForeignKey("xfer_transfers.transfer_id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("ended", UTCDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("agent", sa.String(128), nullable=False, default=""),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

movers = sa.Table(
    "xfer_movers", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("url", sa.String(512), nullable=False, default=""),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("hostname", sa.String(255), nullable=False, default=""),
    sa.Column("registered", UTCDateTime, nullable=False),
    sa.Column("last_beat", UTCDateTime, nullable=False),
    #: "Active" or "Stopped" (a mover that said goodbye)
    sa.Column("status", sa.String(16), nullable=False),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

data_files = sa.Table(
    "xfer_data_files", metadata,
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("owner_group", sa.String(64), nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False, default=""),
    #: "sync" (streamed by the client through a mover) or "async" (pulled by a mover)
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("source_host", sa.String(255), nullable=False, default=""),
    sa.Column("source_user", sa.String(128), nullable=False, default=""),
    sa.Column("source_path", sa.String(2048), nullable=False, default=""),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("checksum", sa.String(16), nullable=True),
    #: "SE:/path/file" or "assoc:NAME"
    sa.Column("destination", sa.String(1024), nullable=False),
    #: where it was stored ("SE:/lfn")
    sa.Column("location", sa.String(1024), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("mover", sa.String(128), nullable=True),
    sa.Column("lease", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    #: bytes moved so far by the current retrieval (the mover's heartbeats tell)
    sa.Column("bytes_done", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("transfer_id", sa.Integer, nullable=True, index=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_update", UTCDateTime, nullable=False),
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Index("ix_xfer_data_status_host", "status", "source_host", "not_before"),
    sa.Index("ix_xfer_data_owner_group", "owner", "group_name", "status"),
    sa.Index("ix_xfer_data_mover", "mover", "status"),
    sa.Index("ix_xfer_data_lease", "lease"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

#: every retrieval or reception of a data file: its mover, times, outcome
retrievals = sa.Table(
    "xfer_retrievals", metadata,
    sa.Column("retrieval_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_id", sa.Integer,
              sa.ForeignKey("xfer_data_files.file_id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("mover", sa.String(128), nullable=False),
    sa.Column("source_host", sa.String(255), nullable=False, default=""),
    sa.Column("lease", sa.String(64), nullable=False, index=True),
    sa.Column("assigned", UTCDateTime(), nullable=False),
    #: microsecond times reported by the mover (for concurrency measurements)
    sa.Column("started_us", sa.BigInteger, nullable=True),
    sa.Column("ended_us", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

#: one row per lock name: the push scheduler serialises its assignments on it (MariaDB)
locks = sa.Table(
    "xfer_locks", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)

TRANSFER_SCHEMA = Schema("Transfer", metadata, migrations=[])

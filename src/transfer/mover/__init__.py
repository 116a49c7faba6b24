"""The data mover: a separate process (``pilotwms mover --config mover.yaml``) that registers
with ``Transfer/DataPush``, pulls files from source hosts (sftp, HTTPS), receives files pushed
synchronously by clients, stores them on storage elements and reports back.

* :mod:`transfer.mover.config`: its YAML configuration;
* :mod:`transfer.mover.retrieve`: pooled sftp connections to source hosts, HTTPS GET;
* :mod:`transfer.mover.process`: the process: heartbeat, work loop, workers;
* :mod:`transfer.mover.receive`: the HTTPS endpoint of synchronous pushes.
"""

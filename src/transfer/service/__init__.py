"""RPC services of the transfer system: ``Transfer/TransferManager``, ``Transfer/DataPush``."""

"""RPC services of the DataManagement system."""

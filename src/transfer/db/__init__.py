"""Tables and queries of the transfer system (schema ``Transfer``)."""

"""Database layer of the DataManagement system (tables and queries; SQLAlchemy Core)."""

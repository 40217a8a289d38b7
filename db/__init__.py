"""Tables, the database engine and sessions, alembic migrations."""

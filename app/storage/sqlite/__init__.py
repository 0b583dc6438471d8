"""The SQLite store: one database file, one group-commit writer, readers of their own.

The store itself is in store.py; the rest is private to it: the writer and its checkpointer, the
per-endpoint counters and limits (retention.py), bodies kept in files (bodyfiles.py), the schema
versions (migrations.py), the lock file that keeps one writing process per database (lock.py).
"""

"""The PostgreSQL store: a server database that several Hookscope processes can share. The store
is in store.py, its group commit in writer.py, its limits in retention.py, its schema versions in
migrations.py; what they all name is here."""

# The channel the processes on one database hear of each other on (LISTEN/NOTIFY).
CHANNEL = "hookscope"
NOTIFY = f"SELECT pg_notify('{CHANNEL}', $1)"
CONNECT_TIMEOUT_S = 10

"""The PostgreSQL store: a server database that several Hookscope processes can share. The store
is in store.py, its schema versions in migrations.py."""

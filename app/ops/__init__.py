"""What users do with stored captures: compare two (diff.py), export one (export.py), send one
again to a URL (replay.py)."""

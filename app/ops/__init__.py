"""What users do with stored captures: compare two (diff.py), export one (export.py), send one
again to a URL (replay.py), forward them (forward.py), tell their event types apart (groups.py),
infer a contract from them (infer.py) and compare two contracts (schemadiff.py)."""

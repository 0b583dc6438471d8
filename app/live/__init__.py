"""Live fan-out: committed captures to streams and long-polls. TODO"""

"""From an HTTP request to a Capture: the guarded connection protocol (protocol.py), the body and
head read within limits (capture.py), body parsing (parse.py, with multipart.py and xml_tree.py;
every parser returns parsed.Parsed) off the event loop when large (offload.py), and per-endpoint
rate limits (limits.py)."""

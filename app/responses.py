"""JSONResponse that always renders: the API's one way of writing JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # A captured JSON body may hold lone surrogates ("\\ud800" escapes), which UTF-8
            # cannot carry: write them escaped, exactly as the sender did.
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")

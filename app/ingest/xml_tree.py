"""XML bodies, as JSON-like objects (xml_to_dict says how). Parsed with defusedxml with DTDs
forbidden outright, so entity expansion (billion laughs) and external entities cannot happen."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from hookscope.ingest.parsed import Parsed, short_error

# Past this many elements, an XML body is reported rather than parsed.
MAX_XML_ELEMENTS = 10_000
_XML_CHUNK = 64 * 1024


class _TooManyElements(Exception):
    pass


class _CountingBuilder(ET.TreeBuilder):
    """ElementTree's tree builder, stopping the parse past MAX_XML_ELEMENTS elements."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def start(self, tag: Any, attrs: Any) -> Any:
        self.elements += 1
        if self.elements > MAX_XML_ELEMENTS:
            raise _TooManyElements
        return super().start(tag, attrs)


def parse_xml(body: bytes) -> Parsed:
    builder = _CountingBuilder()
    parser = SafeET.DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True,
                                     forbid_external=True)
    try:
        # In pieces, so a thread parsing a large body lets the event loop in between.
        for start in range(0, len(body), _XML_CHUNK):
            parser.feed(body[start:start + _XML_CHUNK])
        root = parser.close()
    except _TooManyElements:
        note = (f"XML of more than {MAX_XML_ELEMENTS:,} elements is not parsed; body_text has it "
                "as sent")
        return Parsed("xml", None, note, note)
    except DefusedXmlException as exc:
        return Parsed("xml", None, f"XML refused: {type(exc).__name__} (DTDs and entities are "
                                   "not allowed)")
    except (SafeET.ParseError, ValueError, LookupError, RecursionError) as exc:
        # LookupError: a declared encoding Python does not know (encoding="bogus", "rot13").
        return Parsed("xml", None, f"invalid XML: {short_error(exc)}")
    try:
        return Parsed("xml", xml_to_dict(root))
    except RecursionError:
        return Parsed("xml", None, "XML is nested too deeply")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # drop a {namespace}


def xml_to_dict(root: Any) -> dict[str, Any]:
    """The root element's children become the keys (the root's own name is dropped); an element
    with only text becomes a string; one with children an object; repeated siblings an array;
    attributes become "@name" keys."""
    return _element_object(root)


def _element_object(element: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {f"@{_local(k)}": v for k, v in element.attrib.items()}
    lists: set[str] = set()
    for child in element:
        name = _local(child.tag)
        value = _element_value(child)
        if name in lists:
            obj[name].append(value)
        elif name in obj:
            obj[name] = [obj[name], value]
            lists.add(name)
        else:
            obj[name] = value
    return obj


def _element_value(element: Any) -> Any:
    if len(element) == 0 and not element.attrib:
        return (element.text or "").strip()
    obj = _element_object(element)
    text = (element.text or "").strip()
    if text:
        obj["#text"] = text
    return obj

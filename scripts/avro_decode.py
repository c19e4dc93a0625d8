#!/usr/bin/env python3
"""Independent check of Sluice's Kafka wire format, with fastavro (not the Rust code).

Usage: avro_decode.py SCHEMA.avsc < messages   (one message per line, hex-encoded)
Prints one JSON object per message. Exits non-zero if a message does not start with the Avro
single-object marker (C3 01) followed by the schema's CRC-64-AVRO fingerprint (little endian).
"""
import io
import json
import sys

from fastavro import schemaless_reader
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = parse_schema(json.load(f))
    # fastavro's hex is the fingerprint's little-endian byte sequence, as the header holds it.
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    for number, line in enumerate(sys.stdin, start=1):
        message = bytes.fromhex(line.strip())
        if not message.startswith(header):
            print(f"message {number}: header {message[:10].hex()} is not {header.hex()}", file=sys.stderr)
            return 1
        record = schemaless_reader(io.BytesIO(message[len(header):]), schema)
        print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

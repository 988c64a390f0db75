#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the mosquitto fixtures of mqtt-codec
(crates/mqtt-codec/tests/fixtures): every captured packet on its own, and
every captured direction as one stream. Python 3 standard library only."""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "crates", "mqtt-codec", "tests", "fixtures")


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    n = 0
    for line in open(os.path.join(FIXTURES, "manifest.txt")):
        if line.startswith("#") or not line.strip():
            continue
        name, version = line.split()[:2]
        client = "decode_v5" if version == "5.0" else "decode_v311"
        for direction in ("c2s", "s2c"):
            path = os.path.join(FIXTURES, "sessions", f"{name}.{direction}.hex")
            packets = [bytes.fromhex(l) for l in open(path) if l.strip()]
            stream = b"".join(packets)
            targets = [client] + (["decode_server"] if direction == "c2s" else [])
            for t in targets:
                write(t, stream)
                for p in packets:
                    write(t, p)
                    n += 1
    print(f"seeded {n} packets and the streams into {os.path.join(HERE, 'corpus')}")


if __name__ == "__main__":
    main()

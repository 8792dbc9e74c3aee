#!/usr/bin/env python3
"""An independent decryptor for sealed-secrets items, on pyca/cryptography primitives only.

It shares no code with Sealant: it reads SealedSecrets as JSON (one object or a JSON stream),
derives the OAEP label from each object's own metadata, and prints one JSON object per
SealedSecret mapping each encryptedData key to the base64 of its plaintext.

    sealed_secrets_oracle.py --key tls.key sealed.json
"""
import argparse
import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def label_for(meta):
    annotations = meta.get("annotations") or {}
    namespace = meta.get("namespace", "")
    if annotations.get("sealedsecrets.bitnami.com/cluster-wide") == "true":
        return b""
    if annotations.get("sealedsecrets.bitnami.com/namespace-wide") == "true":
        return namespace.encode()
    return f"{namespace}/{meta.get('name', '')}".encode()


def decrypt_item(key, item, label):
    rsa_len = int.from_bytes(item[:2], "big")
    wrapped, sealed = item[2 : 2 + rsa_len], item[2 + rsa_len :]
    session_key = key.decrypt(
        wrapped,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label or None),
    )
    return AESGCM(session_key).decrypt(b"\0" * 12, sealed, None)


def json_stream(text):
    decoder = json.JSONDecoder()
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return
        obj, i = decoder.raw_decode(text, i)
        yield obj


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", required=True, help="PEM private key (PKCS#1 or PKCS#8)")
    parser.add_argument("file", help="SealedSecret(s) as JSON")
    args = parser.parse_args()
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(args.file) as f:
        text = f.read()
    for ss in json_stream(text):
        label = label_for(ss.get("metadata") or {})
        out = {}
        for name, value in sorted(ss["spec"]["encryptedData"].items()):
            plain = decrypt_item(key, base64.b64decode(value, validate=True), label)
            out[name] = base64.b64encode(plain).decode()
        print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks an OpenTimestamps proof written by `bitacora-cli exportots` with the
OpenTimestamps library itself (Debian's python3-opentimestamps) and python-bitcoinlib,
the way `ots verify` does once it has the block header: the file digest is the RFC 6962
leaf hash SHA-256(0x00 || leaf), the operations lead from it to one Bitcoin block-header
attestation at the anchor's height, and the message there is that header's Merkle root.

    verify_ots(ots_path, leaf_hex, header_hex, height) -> description; raises OtsCheckError

Command line (run it with /usr/bin/python3, which has both libraries):
    ots_check.py --selftest
    ots_check.py BUNDLE.json FILE.ots
    ots_check.py FILE.ots LEAF_HEX HEADER_HEX HEIGHT

Imported by an interpreter without those libraries, verify_ots runs this file under
/usr/bin/python3 instead."""

import hashlib
import io
import json
import os
import struct
import subprocess
import sys

SYSTEM_PYTHON = "/usr/bin/python3"

try:
    from bitcoin.core import CBlockHeader, b2lx
    from opentimestamps.core.notary import BitcoinBlockHeaderAttestation
    from opentimestamps.core.op import OpAppend, OpPrepend, OpSHA256
    from opentimestamps.core.serialize import StreamDeserializationContext, StreamSerializationContext
    from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp
    HAVE_LIBRARIES = True
except ImportError:
    HAVE_LIBRARIES = False


class OtsCheckError(AssertionError):
    pass


def _fail(message):
    raise OtsCheckError(message)


def _hex(value, what, size=None):
    try:
        data = bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)
    except (TypeError, ValueError):
        _fail(f"{what} is not hex")
    if size is not None and len(data) != size:
        _fail(f"{what} is {len(data)} bytes, not {size}")
    return data


def _verify_in_subprocess(ots_path, leaf_hex, header_hex, height):
    if not os.path.exists(SYSTEM_PYTHON) or os.path.realpath(sys.executable) == os.path.realpath(SYSTEM_PYTHON):
        _fail("python3-opentimestamps and python3-bitcoinlib are not importable here (Debian's /usr/bin/python3 has them)")
    out = subprocess.run([SYSTEM_PYTHON, os.path.abspath(__file__), ots_path, leaf_hex, header_hex, str(height)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        text = (out.stdout + out.stderr).strip()
        _fail(text[len("INVALID: "):] if text.startswith("INVALID: ") else text or f"{SYSTEM_PYTHON} exited {out.returncode}")
    return out.stdout.strip()


def verify_ots(ots_path, leaf_hex, header_hex, height):
    """Returns a one-line description of what the proof shows; raises OtsCheckError otherwise."""
    if not HAVE_LIBRARIES:
        return _verify_in_subprocess(ots_path, leaf_hex, header_hex, height)
    leaf = _hex(leaf_hex, "the leaf")
    header_bytes = _hex(header_hex, "the block header", 80)
    if isinstance(height, bool) or not isinstance(height, int) or height < 0:
        _fail(f"the height {height!r} is not a block height")

    with open(ots_path, "rb") as f:
        try:
            detached = DetachedTimestampFile.deserialize(StreamDeserializationContext(f))
        except Exception as e:  # BadMagicError, DeserializationError, TruncationError, ...
            _fail(f"{ots_path} is not a valid OpenTimestamps file: {type(e).__name__}: {e}")

    if not isinstance(detached.file_hash_op, OpSHA256):
        _fail(f"the file hash operation is {detached.file_hash_op.TAG_NAME}, not sha256")
    leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
    if detached.file_digest != leaf_hash:
        _fail(f"the stamped file's digest {detached.file_digest.hex()} is not SHA-256(0x00 || leaf) = {leaf_hash.hex()}")

    attestations = list(detached.timestamp.all_attestations())
    bitcoin = [(msg, a) for msg, a in attestations if isinstance(a, BitcoinBlockHeaderAttestation)]
    if len(bitcoin) != 1:
        _fail(f"expected exactly one Bitcoin block header attestation, found {len(bitcoin)} "
              f"(of {len(attestations)} attestations)")
    msg, attestation = bitcoin[0]
    if attestation.height != height:
        _fail(f"the attestation is for block {attestation.height}, not {height}")

    header = CBlockHeader.deserialize(header_bytes)
    try:
        attested_time = attestation.verify_against_blockheader(msg, header)
    except Exception as e:  # VerificationError
        _fail(f"the attestation does not verify against the header: {e} "
              f"(proof ends in {msg[::-1].hex()}, header Merkle root {b2lx(header.hashMerkleRoot)})")
    others = len(attestations) - 1
    return (f"OpenTimestamps proof verified: SHA-256(0x00 || leaf) = {leaf_hash.hex()} is committed to by the Merkle root "
            f"of Bitcoin block {height} {b2lx(header.GetHash())} (time {attested_time})"
            + (f"; {others} other attestation(s) ignored" if others else ""))


# --- self-test ---------------------------------------------------------------------------
# Builds a genuine proof with the OpenTimestamps library's own operations and checks that
# it serializes to exactly the bytes daemon/proof_tools.cpp ExportOts writes for the same
# inputs (reimplemented in _export_like_bitacora), then that verify_ots accepts it and
# rejects a wrong header, leaf, height and file.

def _sha(b):
    return hashlib.sha256(b).digest()


def _mth(hashes):
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _sha(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:]))


def _audit_path(m, hashes):  # RFC 6962 PATH(m, D[n]), leaf-level sibling first; (sibling, sibling_is_left)
    if len(hashes) == 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return _audit_path(m, hashes[:k]) + [(_mth(hashes[k:]), False)]
    return _audit_path(m - k, hashes[k:]) + [(_mth(hashes[:k]), True)]


def _varuint(v):
    out = bytearray()
    while True:
        b, v = v & 0x7f, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _varbytes(b):
    return _varuint(len(b)) + b


def _export_like_bitacora(leaf, path, tx, payload_offset, tx_index, branch, height):
    out = DetachedTimestampFile.HEADER_MAGIC + _varuint(1) + b"\x08" + _sha(b"\x00" + leaf)
    for sibling, left in path:
        out += (b"\xf1" + _varbytes(b"\x01" + sibling) if left
                else b"\xf1" + _varbytes(b"\x01") + b"\xf0" + _varbytes(sibling)) + b"\x08"
    root_at = payload_offset + 13
    out += b"\xf1" + _varbytes(tx[:root_at]) + b"\xf0" + _varbytes(tx[root_at + 32:]) + b"\x08\x08"
    for sibling in branch:
        out += (b"\xf1" if tx_index & 1 else b"\xf0") + _varbytes(sibling) + b"\x08\x08"
        tx_index >>= 1
    return out + b"\x00" + BitcoinBlockHeaderAttestation.TAG + _varbytes(_varuint(height))


def selftest():
    import shutil
    import tempfile
    tmpdir = tempfile.mkdtemp(prefix="ots-check-")
    try:
        _selftest(tmpdir)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _selftest(tmpdir):
    leaves = [bytes([1, 0x20]) + bytes([i]) * (10 + i) for i in range(11)]
    hashes = [_sha(b"\x00" + leaf) for leaf in leaves]
    index, root = 6, _mth(hashes)
    path = _audit_path(index, hashes)
    assert {left for _, left in path} == {True, False}, "the path should have siblings on both sides"
    payload = b"BTCR\x01" + struct.pack(">Q", len(leaves)) + root
    tx = (struct.pack("<i", 2) + b"\x01" + b"\x11" * 32 + b"\x00\x00\x00\x00" + b"\x00" + b"\xff" * 4
          + b"\x02" + b"\x00" * 8 + bytes([2 + len(payload), 0x6a, len(payload)]) + payload
          + struct.pack("<q", 5000) + b"\x16\x00\x14" + b"\x22" * 20 + b"\x00" * 4)
    payload_offset = tx.index(payload)
    txid = _sha(_sha(tx))
    txids = [_sha(b"coinbase"), _sha(b"other"), txid]  # the anchor last in an odd level: paired with itself
    tx_index = 2
    level, branch, i = list(txids), [], tx_index
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        branch.append(level[i ^ 1])
        level = [_sha(_sha(level[k] + level[k + 1])) for k in range(0, len(level), 2)]
        i >>= 1
    header = CBlockHeader(nVersion=0x20000000, hashPrevBlock=b"\x33" * 32, hashMerkleRoot=level[0],
                          nTime=1_800_000_000, nBits=0x207fffff, nNonce=0).serialize()
    height = 321

    # The same proof from the library's operations.
    stamp = Timestamp(hashes[index])
    tip = stamp
    for sibling, left in path:
        if left:
            tip = tip.ops.add(OpPrepend(b"\x01" + sibling))
        else:
            tip = tip.ops.add(OpPrepend(b"\x01")).ops.add(OpAppend(sibling))
        tip = tip.ops.add(OpSHA256())
    assert tip.msg == root
    root_at = payload_offset + 13
    tip = tip.ops.add(OpPrepend(tx[:root_at])).ops.add(OpAppend(tx[root_at + 32:]))
    tip = tip.ops.add(OpSHA256()).ops.add(OpSHA256())
    assert tip.msg == txid
    i = tx_index
    for sibling in branch:
        tip = tip.ops.add(OpPrepend(sibling) if i & 1 else OpAppend(sibling))
        tip = tip.ops.add(OpSHA256()).ops.add(OpSHA256())
        i >>= 1
    assert tip.msg == level[0]
    tip.attestations.add(BitcoinBlockHeaderAttestation(height))
    buffer = io.BytesIO()
    DetachedTimestampFile(OpSHA256(), stamp).serialize(StreamSerializationContext(buffer))
    ours = _export_like_bitacora(leaves[index], path, tx, payload_offset, tx_index, branch, height)
    assert buffer.getvalue() == ours, "ExportOts's byte layout differs from the library's serialization"

    good = os.path.join(tmpdir, "good.ots")
    with open(good, "wb") as f:
        f.write(ours)
    print(verify_ots(good, leaves[index].hex(), header.hex(), height))

    bad_header = bytearray(header)
    bad_header[40] ^= 1  # a byte of the Merkle root
    truncated = os.path.join(tmpdir, "truncated.ots")
    with open(truncated, "wb") as f:
        f.write(ours[:-5])
    for what, args in (("a wrong header", (good, leaves[index].hex(), bytes(bad_header).hex(), height)),
                       ("another leaf", (good, leaves[index + 1].hex(), header.hex(), height)),
                       ("a wrong height", (good, leaves[index].hex(), header.hex(), height + 1)),
                       ("a truncated file", (truncated, leaves[index].hex(), header.hex(), height))):
        try:
            verify_ots(*args)
        except OtsCheckError as e:
            print(f"rejected {what}: {e}")
        else:
            raise OtsCheckError(f"verify_ots accepted {what}")
    print("selftest passed")


def main(argv):
    if not HAVE_LIBRARIES:
        if os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON):
            return subprocess.call([SYSTEM_PYTHON, os.path.abspath(__file__), *argv[1:]])
        print("error: python3-opentimestamps and python3-bitcoinlib are needed", file=sys.stderr)
        return 2
    try:
        if argv[1:] == ["--selftest"]:
            selftest()
        elif len(argv) == 3:
            with open(argv[1]) as f:
                bundle = json.load(f)
            a = bundle["anchor"]
            print(verify_ots(argv[2], bundle["proof"]["leaf"], a["header"], a["blockHeight"]))
        elif len(argv) == 5:
            print(verify_ots(argv[1], argv[2], argv[3], int(argv[4])))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except OtsCheckError as e:
        print(f"INVALID: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

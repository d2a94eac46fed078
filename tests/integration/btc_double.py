#!/usr/bin/python3
"""A regtest double of Bitcoin Core's bitcoind for the integration suites.

It speaks bitcoind's JSON-RPC (HTTP Basic auth, cookie file, JSON-RPC 1.0 and 2.0,
batches, notifications, /wallet/<name> endpoints) and ZMQ (hashblock, rawblock,
hashtx, rawtx and sequence topics with bitcoind's three-frame messages), grounded in
the real captures in ../shared/fixtures/bitcoind/ (Bitcoin Core v31.99, regtest).

It keeps a real block chain starting at the regtest genesis block: blocks and
transactions are serialized as Bitcoin does (segwit, witness commitment, BIP34 height,
Merkle roots, proof of work against nBits 0x207fffff), with a UTXO set, a mempool with
BIP125/full-RBF replacement, reorgs through invalidateblock/reconsiderblock, manual
pruning by block file as -fastprune does, and a descriptor-like wallet (bech32
addresses, fake but well-formed signatures: no elliptic-curve cryptography).

Run it like bitcoind:
  /usr/bin/python3 btc_double.py -regtest -datadir=DIR -rpcport=PORT -rpcbind=127.0.0.1 \
      [-rpcuser=U -rpcpassword=P] [-prune=1 -fastprune] [-fallbackfee=0.0002] \
      -zmqpubhashblock=tcp://127.0.0.1:P -zmqpubrawblock=... -zmqpubsequence=... ...
Port 0 (-rpcport=0, or a ZMQ endpoint ending in :0, which bitcoind itself refuses) picks a
free port; DIR/regtest/double.json then says which ({"rpcport", "zmq", "pid", ...}), once the
double is ready. Test hooks are extra RPC methods named double_* (see DOUBLE_HOOKS below); a
real bitcoind answers them with "Method not found". Everything lives in memory: a restarted
double starts again from the genesis block (bitcoind would resume from its datadir).

Only the standard library, plus pyzmq for the ZMQ publishers (imported lazily, so the
parsers in this module can be imported without it)."""

import base64
import hashlib
import http.server
import json
import os
import random
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from decimal import Decimal, InvalidOperation

COIN = 100_000_000
MAX_MONEY = 21_000_000 * COIN
COINBASE_MATURITY = 100
HALVING_INTERVAL = 150          # regtest
MIN_BLOCKS_TO_KEEP = 288
REGTEST_BITS = 0x207FFFFF
MAX_BLOCK_WEIGHT = 4_000_000
BLOCK_VERSION = 0x20000000
MIN_RELAY_FEE_KVB = 100         # v31: 0.1 sat/vB (getnetworkinfo "relayfee": 0.00000100)
INCREMENTAL_RELAY_FEE_KVB = 100
WALLET_INCREMENTAL_RELAY_FEE_KVB = 5000
DEFAULT_MAX_RAW_TX_FEE_RATE_KVB = 10_000_000   # 0.10 BTC/kvB
DEFAULT_MAX_TX_FEE = COIN // 10                # -maxtxfee 0.1 BTC
DUST_RELAY_FEE_KVB = 3000
MAX_TIP_AGE = 24 * 60 * 60
MAX_MEMPOOL_TXS = 20_000
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_HTTP_CONNECTIONS = 64
ZMQ_HWM = 1000
PRERELEASE_WARNING = ("This is a pre-release test build - use at your own risk - do not use for mining or "
                      "merchant applications")
NO_WALLET_MESSAGE = ("No wallet is loaded. Load a wallet using loadwallet or create a new one with createwallet. "
                     "(Note: A default wallet is no longer automatically created)")
GENESIS_COINBASE_HEX = (
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468"
    "652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261"
    "696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e0"
    "3909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000")
GENESIS_HASH = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
GENESIS_TIME = 1296688602


# --- hashes and encodings ---------------------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()


def sha256d(data):
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _rol(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


_RMD_RL = [list(range(16)),
           [7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8],
           [3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12],
           [1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2],
           [4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13]]
_RMD_RR = [[5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12],
           [6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2],
           [15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13],
           [8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14],
           [12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11]]
_RMD_SL = [[11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8],
           [7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12],
           [11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5],
           [11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12],
           [9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6]]
_RMD_SR = [[8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6],
           [9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11],
           [9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5],
           [15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8],
           [8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11]]
_RMD_KL = [0x00000000, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xA953FD4E]
_RMD_KR = [0x50A28BE6, 0x5C4DD124, 0x6D703EF3, 0x7A6D76E9, 0x00000000]


def _rmd_f(j, x, y, z):
    if j == 0:
        return x ^ y ^ z
    if j == 1:
        return (x & y) | (~x & z)
    if j == 2:
        return (x | ~y) ^ z
    if j == 3:
        return (x & z) | (y & ~z)
    return x ^ (y | ~z)


def _ripemd160_pure(data):
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    msg = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", 8 * len(data))
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        al, bl, cl, dl, el = h
        ar, br, cr, dr, er = h
        for rnd in range(5):
            for i in range(16):
                t = _rol((al + _rmd_f(rnd, bl, cl, dl) + x[_RMD_RL[rnd][i]] + _RMD_KL[rnd]) & 0xFFFFFFFF,
                         _RMD_SL[rnd][i]) + el
                al, el, dl, cl, bl = el, dl, _rol(cl, 10), bl, t & 0xFFFFFFFF
                t = _rol((ar + _rmd_f(4 - rnd, br, cr, dr) + x[_RMD_RR[rnd][i]] + _RMD_KR[rnd]) & 0xFFFFFFFF,
                         _RMD_SR[rnd][i]) + er
                ar, er, dr, cr, br = er, dr, _rol(cr, 10), br, t & 0xFFFFFFFF
        t = (h[1] + cl + dr) & 0xFFFFFFFF
        h[1] = (h[2] + dl + er) & 0xFFFFFFFF
        h[2] = (h[3] + el + ar) & 0xFFFFFFFF
        h[3] = (h[4] + al + br) & 0xFFFFFFFF
        h[4] = (h[0] + bl + cr) & 0xFFFFFFFF
        h[0] = t
    return struct.pack("<5I", *h)


def ripemd160(data):
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:  # OpenSSL 3 without the legacy provider
        return _ripemd160_pure(data)


def hash160(data):
    return ripemd160(sha256(data))


BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32_CONST, BECH32M_CONST = 1, 0x2BC830A3


def _bech32_polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((b >> i) & 1) else 0
    return chk


def _bech32_hrp_expand(hrp):
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data, frombits, tobits, pad=True):
    acc = bits = 0
    ret = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            return None
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return ret


def segwit_encode(hrp, version, program):
    data = [version] + _convertbits(program, 8, 5)
    const = BECH32_CONST if version == 0 else BECH32M_CONST
    polymod = _bech32_polymod(_bech32_hrp_expand(hrp) + data + [0] * 6) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in data + checksum)


def segwit_decode(hrp, addr):
    """(version, program) of a segwit address of this hrp, or None."""
    if any(ord(c) < 33 or ord(c) > 126 for c in addr) or (addr.lower() != addr and addr.upper() != addr):
        return None
    addr = addr.lower()
    pos = addr.rfind("1")
    if pos < 1 or pos + 7 > len(addr) or len(addr) > 90 or addr[:pos] != hrp:
        return None
    if any(c not in BECH32_CHARSET for c in addr[pos + 1:]):
        return None
    data = [BECH32_CHARSET.find(c) for c in addr[pos + 1:]]
    const = _bech32_polymod(_bech32_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        return None
    data = data[:-6]
    if not data or data[0] > 16:
        return None
    program = _convertbits(data[1:], 5, 8, False)
    if program is None or len(program) < 2 or len(program) > 40:
        return None
    if data[0] == 0 and len(program) not in (20, 32):
        return None
    if (data[0] == 0 and const != BECH32_CONST) or (data[0] != 0 and const != BECH32M_CONST):
        return None
    return data[0], bytes(program)


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check_encode(payload):
    data = payload + sha256d(payload)[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def base58check_decode(text):
    n = 0
    for c in text:
        if c not in B58:
            return None
        n = n * 58 + B58.index(c)
    data = n.to_bytes((n.bit_length() + 7) // 8, "big")
    data = b"\x00" * (len(text) - len(text.lstrip("1"))) + data
    if len(data) < 5 or sha256d(data[:-4])[:4] != data[-4:]:
        return None
    return data[:-4]


_DESC_INPUT_CHARSET = ("0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
                       "ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ")


def _descsum_polymod(symbols):
    gen = [0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD]
    chk = 1
    for value in symbols:
        top = chk >> 35
        chk = (chk & 0x7FFFFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def descsum_create(desc):
    symbols, groups = [], []
    for c in desc:
        v = _DESC_INPUT_CHARSET.find(c)
        symbols.append(v & 31)
        groups.append(v >> 5)
        if len(groups) == 3:
            symbols.append(groups[0] * 9 + groups[1] * 3 + groups[2])
            groups = []
    if len(groups) == 1:
        symbols.append(groups[0])
    elif len(groups) == 2:
        symbols.append(groups[0] * 3 + groups[1])
    checksum = _descsum_polymod(symbols + [0] * 8) ^ 1
    return desc + "#" + "".join(BECH32_CHARSET[(checksum >> (5 * (7 - i))) & 31] for i in range(8))


def format_money(sats):
    """Bitcoin Core's FormatMoney: 8 decimals, trailing zeros trimmed down to two."""
    sign = "-" if sats < 0 else ""
    whole, frac = divmod(abs(sats), COIN)
    text = f"{whole}.{frac:08d}"
    while text.endswith("0") and text[-3] != ".":
        text = text[:-1]
    return sign + text


# --- serialization ----------------------------------------------------------------------

class DecodeError(Exception):
    pass


def ser_compact(n):
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def read(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError("end of data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.read(1)[0]

    def u32(self):
        return struct.unpack("<I", self.read(4))[0]

    def i32(self):
        return struct.unpack("<i", self.read(4))[0]

    def i64(self):
        return struct.unpack("<q", self.read(8))[0]

    def compact(self):
        n = self.u8()
        if n == 0xFD:
            v = struct.unpack("<H", self.read(2))[0]
            if v < 0xFD:
                raise DecodeError("non-canonical ReadCompactSize()")
        elif n == 0xFE:
            v = struct.unpack("<I", self.read(4))[0]
            if v < 0x10000:
                raise DecodeError("non-canonical ReadCompactSize()")
        elif n == 0xFF:
            v = struct.unpack("<Q", self.read(8))[0]
            if v < 0x100000000:
                raise DecodeError("non-canonical ReadCompactSize()")
        else:
            v = n
        if v > 0x02000000:
            raise DecodeError("ReadCompactSize(): size too large")
        return v

    def varbytes(self):
        return self.read(self.compact())

    def done(self):
        return self.pos == len(self.data)


# --- scripts ----------------------------------------------------------------------------

OP_0, OP_PUSHDATA1, OP_PUSHDATA2, OP_PUSHDATA4, OP_1NEGATE, OP_1, OP_16 = 0, 0x4C, 0x4D, 0x4E, 0x4F, 0x51, 0x60
OP_RETURN, OP_DUP, OP_EQUAL, OP_EQUALVERIFY, OP_HASH160, OP_CHECKSIG = 0x6A, 0x76, 0x87, 0x88, 0xA9, 0xAC
MAX_OPCODE = 0xBA
_OPCODE_NAMES = {
    0x61: "OP_NOP", 0x62: "OP_VER", 0x63: "OP_IF", 0x64: "OP_NOTIF", 0x65: "OP_VERIF", 0x66: "OP_VERNOTIF",
    0x67: "OP_ELSE", 0x68: "OP_ENDIF", 0x69: "OP_VERIFY", 0x6A: "OP_RETURN", 0x6B: "OP_TOALTSTACK",
    0x6C: "OP_FROMALTSTACK", 0x6D: "OP_2DROP", 0x6E: "OP_2DUP", 0x6F: "OP_3DUP", 0x70: "OP_2OVER",
    0x71: "OP_2ROT", 0x72: "OP_2SWAP", 0x73: "OP_IFDUP", 0x74: "OP_DEPTH", 0x75: "OP_DROP", 0x76: "OP_DUP",
    0x77: "OP_NIP", 0x78: "OP_OVER", 0x79: "OP_PICK", 0x7A: "OP_ROLL", 0x7B: "OP_ROT", 0x7C: "OP_SWAP",
    0x7D: "OP_TUCK", 0x7E: "OP_CAT", 0x7F: "OP_SUBSTR", 0x80: "OP_LEFT", 0x81: "OP_RIGHT", 0x82: "OP_SIZE",
    0x83: "OP_INVERT", 0x84: "OP_AND", 0x85: "OP_OR", 0x86: "OP_XOR", 0x87: "OP_EQUAL", 0x88: "OP_EQUALVERIFY",
    0x89: "OP_RESERVED1", 0x8A: "OP_RESERVED2", 0x8B: "OP_1ADD", 0x8C: "OP_1SUB", 0x8D: "OP_2MUL",
    0x8E: "OP_2DIV", 0x8F: "OP_NEGATE", 0x90: "OP_ABS", 0x91: "OP_NOT", 0x92: "OP_0NOTEQUAL", 0x93: "OP_ADD",
    0x94: "OP_SUB", 0x95: "OP_MUL", 0x96: "OP_DIV", 0x97: "OP_MOD", 0x98: "OP_LSHIFT", 0x99: "OP_RSHIFT",
    0x9A: "OP_BOOLAND", 0x9B: "OP_BOOLOR", 0x9C: "OP_NUMEQUAL", 0x9D: "OP_NUMEQUALVERIFY",
    0x9E: "OP_NUMNOTEQUAL", 0x9F: "OP_LESSTHAN", 0xA0: "OP_GREATERTHAN", 0xA1: "OP_LESSTHANOREQUAL",
    0xA2: "OP_GREATERTHANOREQUAL", 0xA3: "OP_MIN", 0xA4: "OP_MAX", 0xA5: "OP_WITHIN", 0xA6: "OP_RIPEMD160",
    0xA7: "OP_SHA1", 0xA8: "OP_SHA256", 0xA9: "OP_HASH160", 0xAA: "OP_HASH256", 0xAB: "OP_CODESEPARATOR",
    0xAC: "OP_CHECKSIG", 0xAD: "OP_CHECKSIGVERIFY", 0xAE: "OP_CHECKMULTISIG", 0xAF: "OP_CHECKMULTISIGVERIFY",
    0xB0: "OP_NOP1", 0xB1: "OP_CHECKLOCKTIMEVERIFY", 0xB2: "OP_CHECKSEQUENCEVERIFY", 0xB3: "OP_NOP4",
    0xB4: "OP_NOP5", 0xB5: "OP_NOP6", 0xB6: "OP_NOP7", 0xB7: "OP_NOP8", 0xB8: "OP_NOP9", 0xB9: "OP_NOP10",
    0xBA: "OP_CHECKSIGADD", 0x50: "OP_RESERVED"}


def push_data(data):
    n = len(data)
    if n < OP_PUSHDATA1:
        return bytes([n]) + data
    if n <= 0xFF:
        return bytes([OP_PUSHDATA1, n]) + data
    if n <= 0xFFFF:
        return bytes([OP_PUSHDATA2]) + struct.pack("<H", n) + data
    return bytes([OP_PUSHDATA4]) + struct.pack("<I", n) + data


def script_num(n):
    """CScriptNum serialization (minimal, sign bit in the last byte)."""
    if n == 0:
        return b""
    neg, v, out = n < 0, abs(n), bytearray()
    while v:
        out.append(v & 0xFF)
        v >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def push_int(n):
    """CScript() << n."""
    if n == -1 or 1 <= n <= 16:
        return bytes([n + (OP_1 - 1)])
    if n == 0:
        return bytes([OP_0])
    return push_data(script_num(n))


def script_ops(script):
    """[(opcode, data or None)]; raises DecodeError on a truncated push."""
    ops, i = [], 0
    while i < len(script):
        op = script[i]
        i += 1
        if op <= OP_PUSHDATA4:
            if op < OP_PUSHDATA1:
                n = op
            elif op == OP_PUSHDATA1:
                if i + 1 > len(script):
                    raise DecodeError("truncated")
                n, i = script[i], i + 1
            elif op == OP_PUSHDATA2:
                if i + 2 > len(script):
                    raise DecodeError("truncated")
                n, i = struct.unpack("<H", script[i:i + 2])[0], i + 2
            else:
                if i + 4 > len(script):
                    raise DecodeError("truncated")
                n, i = struct.unpack("<I", script[i:i + 4])[0], i + 4
            if i + n > len(script):
                raise DecodeError("truncated")
            ops.append((op, script[i:i + n]))
            i += n
        else:
            ops.append((op, None))
    return ops


def script_has_valid_ops(script):
    try:
        return all(op <= MAX_OPCODE for op, _ in script_ops(script)) and len(script) <= 10000
    except DecodeError:
        return False


def script_to_asm(script):
    out = []
    try:
        for op, data in script_ops(script):
            if data is not None:
                if len(data) <= 4:
                    out.append(str(_decode_script_num(data)))
                else:
                    out.append(data.hex())
            elif op == OP_1NEGATE:
                out.append("-1")
            elif OP_1 <= op <= OP_16:
                out.append(str(op - OP_1 + 1))
            else:
                out.append(_OPCODE_NAMES.get(op, "OP_UNKNOWN"))
    except DecodeError:
        out.append("[error]")
    return " ".join(out)


def _decode_script_num(data):
    if not data:
        return 0
    v = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(v & ~(0x80 << (8 * (len(data) - 1))))
    return v


def is_push_only(script):
    try:
        return all(op <= OP_16 for op, _ in script_ops(script))
    except DecodeError:
        return False


def solve_script(script):
    """(type, solution) as Bitcoin Core's Solver names them."""
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "pubkeyhash", script[3:23]
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == OP_EQUAL:
        return "scripthash", script[2:22]
    if n == 4 and script == b"\x51\x02\x4e\x73":
        return "anchor", script[2:]
    if 4 <= n <= 42 and (script[0] == OP_0 or OP_1 <= script[0] <= OP_16) and script[1] + 2 == n and \
            2 <= script[1] <= 40:
        version = 0 if script[0] == OP_0 else script[0] - OP_1 + 1
        program = script[2:]
        if version == 0 and len(program) == 20:
            return "witness_v0_keyhash", program
        if version == 0 and len(program) == 32:
            return "witness_v0_scripthash", program
        if version == 1 and len(program) == 32:
            return "witness_v1_taproot", program
        if version != 0:
            return "witness_unknown", (version, program)
        return "nonstandard", None
    if n >= 1 and script[0] == OP_RETURN and is_push_only(script[1:]):
        return "nulldata", None
    if (n == 35 and script[0] == 33 and script[34] == OP_CHECKSIG) or (
            n == 67 and script[0] == 65 and script[66] == OP_CHECKSIG):
        return "pubkey", script[1:-1]
    return "nonstandard", None


HRP = "bcrt"


def script_address(script):
    kind, sol = solve_script(script)
    if kind == "pubkeyhash":
        return base58check_encode(b"\x6f" + sol)
    if kind == "scripthash":
        return base58check_encode(b"\xc4" + sol)
    if kind in ("witness_v0_keyhash", "witness_v0_scripthash"):
        return segwit_encode(HRP, 0, sol)
    if kind == "witness_v1_taproot":
        return segwit_encode(HRP, 1, sol)
    if kind == "anchor":
        return segwit_encode(HRP, 1, sol)
    if kind == "witness_unknown":
        return segwit_encode(HRP, sol[0], sol[1])
    return None


def address_to_script(address):
    """scriptPubKey for a regtest address, or None if it is not valid."""
    decoded = segwit_decode(HRP, address)
    if decoded:
        version, program = decoded
        return bytes([OP_0 if version == 0 else OP_1 + version - 1, len(program)]) + program
    raw = base58check_decode(address)
    if raw and len(raw) == 21:
        if raw[0] == 0x6F:
            return b"\x76\xa9\x14" + raw[1:] + b"\x88\xac"
        if raw[0] == 0xC4:
            return b"\xa9\x14" + raw[1:] + b"\x87"
    return None


def script_descriptor(script):
    kind, sol = solve_script(script)
    if kind == "pubkey":
        return descsum_create(f"pk({sol.hex()})")
    if kind == "witness_v1_taproot":
        return descsum_create(f"rawtr({sol.hex()})")
    address = script_address(script)
    if address:
        return descsum_create(f"addr({address})")
    return descsum_create(f"raw({script.hex()})")


def script_pubkey_json(script, with_desc=True):
    out = {"asm": script_to_asm(script)}
    if with_desc:
        out["desc"] = script_descriptor(script)
    out["hex"] = script.hex()
    address = script_address(script)
    if address:
        out["address"] = address
    out["type"] = solve_script(script)[0]
    return out


def dust_threshold(script):
    kind, _ = solve_script(script)
    if kind == "nulldata" or (script and script[0] == OP_RETURN):
        return 0
    size = 8 + len(ser_compact(len(script))) + len(script)
    witness = kind.startswith("witness") or kind == "anchor"
    size += (32 + 4 + 1 + 26 + 4) if witness else (32 + 4 + 1 + 107 + 4)
    return size * DUST_RELAY_FEE_KVB // 1000


def fee_for(rate_kvb, vsize):
    """CFeeRate::GetFee: rounded up."""
    return -(-rate_kvb * vsize // 1000) if rate_kvb > 0 else 0


# --- transactions -----------------------------------------------------------------------

class TxIn:
    __slots__ = ("prev_txid", "prev_n", "script_sig", "sequence", "witness")

    def __init__(self, prev_txid, prev_n, script_sig=b"", sequence=0xFFFFFFFF, witness=None):
        self.prev_txid = prev_txid      # internal byte order
        self.prev_n = prev_n
        self.script_sig = script_sig
        self.sequence = sequence
        self.witness = list(witness or [])

    @property
    def outpoint(self):
        return (self.prev_txid, self.prev_n)

    def copy(self):
        return TxIn(self.prev_txid, self.prev_n, self.script_sig, self.sequence, self.witness)


class TxOut:
    __slots__ = ("value", "script")

    def __init__(self, value, script):
        self.value = value
        self.script = script

    def serialize(self):
        return struct.pack("<q", self.value) + ser_compact(len(self.script)) + self.script


class Tx:
    """An immutable-by-convention transaction; build a new one to change it."""

    def __init__(self, version=2, vin=None, vout=None, locktime=0):
        self.version = version
        self.vin = vin or []
        self.vout = vout or []
        self.locktime = locktime
        self._cache = {}

    def has_witness(self):
        return any(i.witness for i in self.vin)

    def serialize(self, with_witness=True):
        key = ("ser", with_witness)
        if key in self._cache:
            return self._cache[key]
        witness = with_witness and self.has_witness()
        parts = [struct.pack("<i", self.version)]
        if witness:
            parts.append(b"\x00\x01")
        parts.append(ser_compact(len(self.vin)))
        for i in self.vin:
            parts += [i.prev_txid, struct.pack("<I", i.prev_n), ser_compact(len(i.script_sig)), i.script_sig,
                      struct.pack("<I", i.sequence)]
        parts.append(ser_compact(len(self.vout)))
        parts += [o.serialize() for o in self.vout]
        if witness:
            for i in self.vin:
                parts.append(ser_compact(len(i.witness)))
                for item in i.witness:
                    parts += [ser_compact(len(item)), item]
        parts.append(struct.pack("<I", self.locktime))
        out = b"".join(parts)
        self._cache[key] = out
        return out

    @property
    def txid(self):
        if "txid" not in self._cache:
            self._cache["txid"] = sha256d(self.serialize(False))
        return self._cache["txid"]

    @property
    def wtxid(self):
        if "wtxid" not in self._cache:
            self._cache["wtxid"] = sha256d(self.serialize(True))
        return self._cache["wtxid"]

    @property
    def txid_hex(self):
        return self.txid[::-1].hex()

    @property
    def wtxid_hex(self):
        return self.wtxid[::-1].hex()

    @property
    def size(self):
        return len(self.serialize(True))

    @property
    def stripped_size(self):
        return len(self.serialize(False))

    @property
    def weight(self):
        return self.stripped_size * 3 + self.size

    @property
    def vsize(self):
        return (self.weight + 3) // 4

    def is_coinbase(self):
        return len(self.vin) == 1 and self.vin[0].prev_txid == b"\x00" * 32 and self.vin[0].prev_n == 0xFFFFFFFF

    def value_out(self):
        return sum(o.value for o in self.vout)

    def copy(self):
        return Tx(self.version, [i.copy() for i in self.vin], [TxOut(o.value, o.script) for o in self.vout],
                  self.locktime)

    @staticmethod
    def deserialize(reader, allow_witness=True):
        """Bitcoin Core's UnserializeTransaction semantics."""
        version = reader.i32()
        vin = Tx._read_vin(reader)
        flags = 0
        vout = []
        if not vin and allow_witness:
            flags = reader.u8()
            if flags != 0:
                vin = Tx._read_vin(reader)
                vout = Tx._read_vout(reader)
        else:
            vout = Tx._read_vout(reader)
        if (flags & 1) and allow_witness:
            flags ^= 1
            for i in vin:
                n = reader.compact()
                i.witness = [reader.varbytes() for _ in range(n)]
            if not any(i.witness for i in vin):
                raise DecodeError("Superfluous witness record")
        if flags:
            raise DecodeError("Unknown transaction optional data")
        locktime = reader.u32()
        return Tx(version, vin, vout, locktime)

    @staticmethod
    def _read_vin(reader):
        n = reader.compact()
        out = []
        for _ in range(n):
            txid = reader.read(32)
            idx = reader.u32()
            script = reader.varbytes()
            seq = reader.u32()
            out.append(TxIn(txid, idx, script, seq))
        return out

    @staticmethod
    def _read_vout(reader):
        n = reader.compact()
        out = []
        for _ in range(n):
            value = reader.i64()
            out.append(TxOut(value, reader.varbytes()))
        return out

    @staticmethod
    def from_bytes(data, allow_witness=True):
        reader = Reader(data)
        tx = Tx.deserialize(reader, allow_witness)
        if not reader.done():
            raise DecodeError("trailing data")
        return tx


def decode_hex_tx(text, try_no_witness=True, try_witness=True):
    """Bitcoin Core's DecodeHexTx: both serializations, the one that consumes everything
    and passes the script sanity check, preferring the extended one. None on failure."""
    try:
        data = bytes.fromhex(text)
    except (ValueError, TypeError):
        return None
    if not isinstance(text, str) or len(text) % 2:
        return None
    extended = legacy = None
    if try_witness:
        try:
            extended = Tx.from_bytes(data, True)
        except DecodeError:
            extended = None
    if try_no_witness:
        try:
            legacy = Tx.from_bytes(data, False)
        except DecodeError:
            legacy = None
    if extended and legacy:
        ok_ext, ok_leg = _check_tx_scripts(extended), _check_tx_scripts(legacy)
        if ok_leg and not ok_ext:
            return legacy
        return extended
    return extended or legacy


def _check_tx_scripts(tx):
    return all(script_has_valid_ops(i.script_sig) for i in tx.vin) and all(
        script_has_valid_ops(o.script) for o in tx.vout)


def merkle_root(hashes):
    if not hashes:
        return b"\x00" * 32
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def bits_to_target(bits):
    exponent, mantissa = bits >> 24, bits & 0x7FFFFF
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    return mantissa << (8 * (exponent - 3))


def bits_difficulty(bits):
    shift = (bits >> 24) & 0xFF
    diff = float(0x0000FFFF) / float(bits & 0x00FFFFFF)
    while shift < 29:
        diff *= 256.0
        shift += 1
    while shift > 29:
        diff /= 256.0
        shift -= 1
    return diff


def block_work(bits):
    return (1 << 256) // (bits_to_target(bits) + 1)


class Header:
    __slots__ = ("version", "prev", "merkle", "time", "bits", "nonce")

    def __init__(self, version, prev, merkle, time_, bits, nonce):
        self.version, self.prev, self.merkle = version, prev, merkle
        self.time, self.bits, self.nonce = time_, bits, nonce

    def serialize(self):
        return struct.pack("<i", self.version) + self.prev + self.merkle + struct.pack("<III", self.time, self.bits,
                                                                                        self.nonce)

    def hash(self):
        return sha256d(self.serialize())

    @staticmethod
    def from_bytes(data):
        version, = struct.unpack("<i", data[:4])
        t, b, n = struct.unpack("<III", data[68:80])
        return Header(version, data[4:36], data[36:68], t, b, n)


def serialize_block(header, txs):
    return header.serialize() + ser_compact(len(txs)) + b"".join(t.serialize(True) for t in txs)


def parse_block(data):
    reader = Reader(data)
    header = Header.from_bytes(reader.read(80))
    txs = [Tx.deserialize(reader) for _ in range(reader.compact())]
    if not reader.done():
        raise DecodeError("trailing data")
    return header, txs


# --- CMerkleBlock (gettxoutproof) ---------------------------------------------------------

def _tree_width(ntx, height):
    return (ntx + (1 << height) - 1) >> height


def _tree_hash(height, pos, txids):
    if height == 0:
        return txids[pos]
    left = _tree_hash(height - 1, pos * 2, txids)
    right = _tree_hash(height - 1, pos * 2 + 1, txids) if pos * 2 + 1 < _tree_width(len(txids), height - 1) else left
    return sha256d(left + right)


def build_merkle_proof(header_bytes, txids, matches):
    """CMerkleBlock serialization of the block's partial Merkle tree for `matches`."""
    ntx = len(txids)
    height = 0
    while _tree_width(ntx, height) > 1:
        height += 1
    bits, hashes = [], []

    def traverse(h, pos):
        parent_of_match = any(matches[p] for p in range(pos << h, min((pos + 1) << h, ntx)))
        bits.append(parent_of_match)
        if h == 0 or not parent_of_match:
            hashes.append(_tree_hash(h, pos, txids))
        else:
            traverse(h - 1, pos * 2)
            if pos * 2 + 1 < _tree_width(ntx, h - 1):
                traverse(h - 1, pos * 2 + 1)

    traverse(height, 0)
    flag_bytes = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        flag_bytes[i // 8] |= int(b) << (i % 8)
    return (header_bytes + struct.pack("<I", ntx) + ser_compact(len(hashes)) + b"".join(hashes) +
            ser_compact(len(flag_bytes)) + bytes(flag_bytes))


def parse_merkle_proof(data):
    """(header bytes, ntx, root, [matched txids]) of a CMerkleBlock; raises DecodeError."""
    reader = Reader(data)
    header = reader.read(80)
    ntx = reader.u32()
    hashes = [reader.read(32) for _ in range(reader.compact())]
    flag_bytes = reader.varbytes()
    if not reader.done():
        raise DecodeError("trailing data")
    bits = [(flag_bytes[i // 8] >> (i % 8)) & 1 for i in range(len(flag_bytes) * 8)]
    if ntx == 0 or ntx > MAX_BLOCK_WEIGHT // 240 or len(hashes) > ntx or len(bits) < len(hashes):
        raise DecodeError("bad proof")
    height = 0
    while _tree_width(ntx, height) > 1:
        height += 1
    state = {"bit": 0, "hash": 0}
    matched = []

    def extract(h, pos):
        if state["bit"] >= len(bits):
            raise DecodeError("overflow")
        parent_of_match = bits[state["bit"]]
        state["bit"] += 1
        if h == 0 or not parent_of_match:
            if state["hash"] >= len(hashes):
                raise DecodeError("overflow")
            value = hashes[state["hash"]]
            state["hash"] += 1
            if h == 0 and parent_of_match:
                matched.append(value)
            return value
        left = extract(h - 1, pos * 2)
        if pos * 2 + 1 < _tree_width(ntx, h - 1):
            right = extract(h - 1, pos * 2 + 1)
            if right == left:
                raise DecodeError("duplicate")
        else:
            right = left
        return sha256d(left + right)

    root = extract(height, 0)
    if state["hash"] != len(hashes) or (state["bit"] + 7) // 8 != len(flag_bytes):
        raise DecodeError("not all consumed")
    return header, ntx, root, matched


# --- JSON-RPC values ----------------------------------------------------------------------

class Amount(int):
    """Satoshis, written as bitcoind writes amounts: a JSON number with 8 decimals."""


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class TxReject(Exception):
    """A TxValidationState: reject reason, debug message; str() is its ToString()."""

    def __init__(self, kind, reason, debug=""):
        self.kind = kind        # "invalid", "missing_inputs", "max_fee"
        if not debug and ", " in reason:
            reason, debug = reason.split(", ", 1)
        self.reject_reason = reason
        self.debug = debug
        self.reason = reason + (", " + debug if debug else "")
        super().__init__(self.reason)


def jdump(value):
    """UniValue's compact writer: amounts with 8 decimals, doubles with 16 significant digits."""
    out = []
    _jdump(value, out)
    return "".join(out)


def _jdump(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, Amount):
        whole, frac = divmod(abs(int(v)), COIN)
        out.append(f"{'-' if v < 0 else ''}{whole}.{frac:08d}")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(format(v, ".16g") if v == v and v not in (float("inf"), float("-inf")) else "null")
    elif isinstance(v, Decimal):
        out.append(str(v))
    elif isinstance(v, str):
        out.append(json.dumps(v, ensure_ascii=False))
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _jdump(x, out)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        for i, (k, x) in enumerate(v.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(k), ensure_ascii=False))
            out.append(":")
            _jdump(x, out)
        out.append("}")
    else:
        out.append(json.dumps(str(v)))


def uv_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float, Decimal)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def get_int(v, lo=-(1 << 31), hi=(1 << 31) - 1):
    """UniValue::getInt<int>: a number holding an integer, else a runtime error (code -1)."""
    if isinstance(v, bool) or not isinstance(v, (int, Decimal, float)):
        raise RpcError(-3, f"JSON value of type {uv_type(v)} is not of expected type number")
    if isinstance(v, (Decimal, float)):
        if v != int(v):
            raise RpcError(-1, "JSON integer out of range")
        v = int(v)
    if v < lo or v > hi:
        raise RpcError(-1, "JSON integer out of range")
    return v


def parse_fixed(v, decimals):
    """ParseFixedPoint of a JSON number or string; None when not valid."""
    if isinstance(v, bool):
        return None
    text = str(v) if not isinstance(v, float) else repr(v)
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    scaled = d * (10 ** decimals)
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def amount_from_value(v, decimals=8):
    if not isinstance(v, (int, float, Decimal, str)) or isinstance(v, bool):
        raise RpcError(-3, "Amount is not a number or string")
    value = parse_fixed(v, decimals)
    if value is None:
        raise RpcError(-3, "Invalid amount")
    if value < 0 or value > MAX_MONEY:
        raise RpcError(-3, "Amount out of range")
    return value


def parse_hash(v, name):
    if not isinstance(v, str):
        raise RpcError(-3, f"JSON value of type {uv_type(v)} is not of expected type string")
    if len(v) == 64:
        try:
            return bytes.fromhex(v)[::-1]
        except ValueError:
            pass
    if len(v) != 64:
        raise RpcError(-8, f"{name} must be of length 64 (not {len(v)}, for '{v}')")
    raise RpcError(-8, f"{name} must be hexadecimal string (not '{v}')")


def parse_hex(v, name):
    if not isinstance(v, str):
        raise RpcError(-3, f"JSON value of type {uv_type(v)} is not of expected type string")
    try:
        if len(v) % 2:
            raise ValueError
        return bytes.fromhex(v)
    except ValueError:
        raise RpcError(-8, f"{name} must be hexadecimal string (not '{v}')") from None


def feerate_str(rate_kvb):
    """CFeeRate::ToString(SAT_VB)."""
    return f"{rate_kvb // 1000}.{rate_kvb % 1000:03d} sat/vB"


# --- ZMQ ----------------------------------------------------------------------------------

ZMQ_TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")


class ZmqPublisher:
    """One PUB socket per distinct endpoint; a sequence counter per topic (per notifier)."""

    def __init__(self, endpoints, hwm=ZMQ_HWM, log=None):
        import zmq  # noqa: E402 (only the program needs pyzmq)
        self.zmq = zmq
        self.ctx = zmq.Context.instance()
        self.endpoints = dict(endpoints)        # topic -> configured address
        self.hwm = {t: hwm for t in self.endpoints}
        self.bound = {}                          # configured address -> actual address
        self.sockets = {}
        self.seq = {t: 0 for t in self.endpoints}
        self.drop = 0
        self.paused = False
        self.sent = 0
        self.dropped = 0
        self.log = log
        self._open()

    def _open(self, retry_s=0.0):
        """Binds a PUB socket per endpoint; on reopening, waits up to retry_s for the port."""
        for address in dict.fromkeys(self.endpoints.values()):
            sock = self.ctx.socket(self.zmq.PUB)
            sock.setsockopt(self.zmq.SNDHWM, self.hwm[next(t for t, a in self.endpoints.items() if a == address)])
            sock.setsockopt(self.zmq.LINGER, 0)
            target = self.bound.get(address, address)
            deadline = time.monotonic() + retry_s
            while True:
                try:
                    sock.bind(target)
                    break
                except self.zmq.ZMQError as e:
                    if time.monotonic() >= deadline:
                        sock.close(0)
                        raise RuntimeError(f"Unable to bind ZMQ endpoint {target}: {e}") from None
                    time.sleep(0.1)
            self.bound[address] = sock.getsockopt(self.zmq.LAST_ENDPOINT).decode()
            self.sockets[address] = sock

    def close(self):
        for sock in self.sockets.values():
            sock.close(0)
        self.sockets = {}

    def pause(self, paused):
        if paused and not self.paused:
            self.close()
        elif not paused and self.paused:
            self._open(retry_s=5.0)
        self.paused = paused

    def publish(self, topic, body):
        address = self.endpoints.get(topic)
        if address is None:
            return
        seq = self.seq[topic]
        self.seq[topic] = (seq + 1) & 0xFFFFFFFF
        if self.drop > 0:
            self.drop -= 1
            self.dropped += 1
            return
        if self.paused:
            self.dropped += 1
            return
        try:
            self.sockets[address].send_multipart([topic.encode(), body, struct.pack("<I", seq)],
                                                 flags=self.zmq.NOBLOCK)
            self.sent += 1
        except self.zmq.ZMQError:
            self.dropped += 1


# --- chain state --------------------------------------------------------------------------

class Coin:
    __slots__ = ("value", "script", "height", "coinbase")

    def __init__(self, value, script, height, coinbase):
        self.value, self.script, self.height, self.coinbase = value, script, height, coinbase


class BlockIndex:
    def __init__(self, header, height, prev, txs, seq_id):
        self.header = header
        self.hash = header.hash()
        self.hash_hex = self.hash[::-1].hex()
        self.height = height
        self.prev = prev
        self.chainwork = (prev.chainwork if prev else 0) + block_work(header.bits)
        self.txs = txs
        self.raw = serialize_block(header, txs)
        self.size = len(self.raw)
        self.stripped_size = 80 + len(ser_compact(len(txs))) + sum(t.stripped_size for t in txs)
        self.weight = self.stripped_size * 3 + self.size
        self.chain_tx = (prev.chain_tx if prev else 0) + len(txs)
        self.seq_id = seq_id
        self.failed = False
        self.failed_child = False
        self.have_data = True
        self.file = 0
        self.undo = None
        self.undo_written = False
        self.children = []

    def invalid(self):
        return self.failed or self.failed_child

    def median_time_past(self):
        times, b = [], self
        while b is not None and len(times) < 11:
            times.append(b.header.time)
            b = b.prev
        times.sort()
        return times[len(times) // 2]

    def descendants(self):
        out, frontier = [], list(self.children)
        while frontier:
            b = frontier.pop()
            out.append(b)
            frontier.extend(b.children)
        return out

    def ancestor(self, height):
        b = self
        while b is not None and b.height > height:
            b = b.prev
        return b if b is not None and b.height == height else None


def _varint_len(n):
    size = 1
    while n > 0x7F:
        n = (n >> 7) - 1
        size += 1
    return size


def _compress_amount(n):
    if n == 0:
        return 0
    e = 0
    while n % 10 == 0 and e < 9:
        n //= 10
        e += 1
    if e < 9:
        d = n % 10
        n //= 10
        return 1 + (n * 9 + d - 1) * 10 + e
    return 1 + (n - 1) * 10 + 9


def _undo_size(bi):
    size = len(ser_compact(max(0, len(bi.txs) - 1)))
    for pos in range(1, len(bi.txs)):
        coins = bi.undo.get(pos, [])
        size += len(ser_compact(len(coins)))
        for c in coins:
            size += _varint_len(c.height * 2 + int(c.coinbase)) + (1 if c.height > 0 else 0)
            size += _varint_len(_compress_amount(c.value))
            kind, _ = solve_script(c.script)
            if kind in ("pubkeyhash", "scripthash"):
                size += 21
            elif kind == "pubkey" and len(c.script) == 35:
                size += 33
            else:
                size += _varint_len(len(c.script) + 6) + len(c.script)
    return 8 + size + 32


class BlockFile:
    __slots__ = ("size", "undo_size", "height_first", "height_last", "pruned")

    def __init__(self):
        self.size = self.undo_size = 0
        self.height_first = None
        self.height_last = 0
        self.pruned = False


class MempoolEntry:
    __slots__ = ("tx", "fee", "time", "height", "unbroadcast", "seq")

    def __init__(self, tx, fee, time_, height, unbroadcast, seq):
        self.tx, self.fee, self.time, self.height, self.unbroadcast, self.seq = tx, fee, time_, height, unbroadcast, seq


class Options:
    def __init__(self, args):
        self.args = args
        self.prune = int(args.get("prune", "0") or 0)
        self.fastprune = args.get("fastprune", "0") not in ("0", "")
        self.fallbackfee_kvb = 0
        if "fallbackfee" in args:
            value = parse_fixed(args["fallbackfee"], 8)
            self.fallbackfee_kvb = value or 0
        self.max_blockfile = 0x10000 if self.fastprune else 0x8000000
        self.prune_after = 100 if self.fastprune else 1000
        self.walletrbf = args.get("walletrbf", "1") != "0"


class Node:
    """Chain, mempool, wallets and ZMQ notifications, all under one lock."""

    def __init__(self, options, zmq_publisher=None, log=None):
        self.opts = options
        self.lock = threading.RLock()
        self.zmq = zmq_publisher
        self.log = log or (lambda msg: None)
        self.mocktime = 0
        self.started = time.time()
        self.blocks = {}
        self.chain = []
        self.utxo = {}
        self.tx_index = {}
        self.spent_by = {}
        self.mempool = {}
        self.mempool_spends = {}
        self.mempool_seq = 1
        self.entry_seq = 0
        self.block_seq = 0
        self.known_txs = {}
        self.wallets = {}          # loaded, by name (in load order)
        self.wallet_store = {}     # every wallet created in this process
        self.ibd = True
        self.files = [BlockFile()]
        self.pruned_any = False
        self.last_template = None
        self._init_genesis()

    # time

    def now(self):
        return self.mocktime if self.mocktime else int(time.time())

    @property
    def tip(self):
        return self.chain[-1]

    def _init_genesis(self):
        coinbase = Tx.from_bytes(bytes.fromhex(GENESIS_COINBASE_HEX))
        header = Header(1, b"\x00" * 32, coinbase.txid, GENESIS_TIME, REGTEST_BITS, 2)
        genesis = BlockIndex(header, 0, None, [coinbase], self._next_block_seq())
        assert genesis.hash_hex == GENESIS_HASH
        self.blocks[genesis.hash] = genesis
        self._store_block(genesis)
        # Like bitcoind on a fresh datadir: the genesis block is connected while in initial
        # block download, so hashtx/rawtx/sequence publish their message 0 (before anyone can
        # subscribe) and hashblock/rawblock do not.
        self._connect_block(genesis)
        self._notify_block_connected(genesis)

    def _next_block_seq(self):
        self.block_seq += 1
        return self.block_seq

    # block files (as -fastprune sizes them)

    def _store_block(self, bi):
        add = bi.size + 8
        f = self.files[-1]
        if f.size and f.size + add >= self.opts.max_blockfile:
            self.files.append(BlockFile())
            f = self.files[-1]
        f.size += add
        f.height_first = bi.height if f.height_first is None else min(f.height_first, bi.height)
        f.height_last = max(f.height_last, bi.height)
        bi.file = len(self.files) - 1

    def size_on_disk(self):
        return sum(f.size + f.undo_size for f in self.files if not f.pruned)

    def prune_height(self):
        """Height of the highest pruned block of the active chain, or None."""
        if not self.pruned_any:
            return None
        b = self.tip
        while b.prev is not None and b.prev.have_data:
            b = b.prev
        if b.height == 0 and b.have_data:
            return None
        return b.height - 1 if b.have_data else b.height

    def prune_files(self, height):
        for index, f in enumerate(self.files[:-1]):
            if f.pruned or f.size == 0 or f.height_last > height:
                continue
            f.pruned = True
            self.pruned_any = True
            for bi in self.blocks.values():
                if bi.file == index:
                    bi.have_data = False
                    bi.raw = None

    # lookups

    def lookup_block(self, block_hash):
        return self.blocks.get(block_hash)

    def in_active_chain(self, bi):
        return bi.height < len(self.chain) and self.chain[bi.height] is bi

    def find_txout(self, outpoint):
        """The TxOut behind an outpoint, wherever we saw its transaction."""
        tx = self.known_txs.get(outpoint[0])
        if tx is not None and outpoint[1] < len(tx.vout):
            return tx.vout[outpoint[1]]
        return None

    def spendable_coin(self, outpoint):
        """A coin a new mempool transaction may spend (confirmed or in the mempool), ignoring
        mempool spends; None if missing."""
        entry = self.mempool.get(outpoint[0])
        if entry is not None:
            if outpoint[1] < len(entry.tx.vout):
                out = entry.tx.vout[outpoint[1]]
                return Coin(out.value, out.script, 0x7FFFFFFF, False)
            return None
        return self.utxo.get(outpoint)

    # connecting and disconnecting blocks

    def _connect_block(self, bi):
        undo = {}
        for pos, tx in enumerate(bi.txs):
            txid = tx.txid
            if pos > 0:
                coins = []
                for inp in tx.vin:
                    coin = self.utxo.pop(inp.outpoint, None)
                    if coin is None:
                        raise RuntimeError(f"block {bi.hash_hex} spends a missing coin")
                    coins.append(coin)
                    self.spent_by[inp.outpoint] = (txid, bi.height)
                undo[pos] = coins
            if bi.height > 0:
                for n, out in enumerate(tx.vout):
                    if not (out.script[:1] == b"\x6a" or len(out.script) > 10000):
                        self.utxo[(txid, n)] = Coin(out.value, out.script, bi.height, pos == 0)
            self.tx_index[txid] = (bi, pos)
            self.known_txs[txid] = tx
        bi.undo = undo
        self.chain.append(bi)
        if not bi.undo_written and bi.height > 0:
            self.files[bi.file].undo_size += _undo_size(bi)
            bi.undo_written = True
        for tx in bi.txs:
            if tx.txid in self.mempool:
                self._mempool_remove(tx.txid, "block")
            for inp in tx.vin:
                other = self.mempool_spends.get(inp.outpoint)
                if other is not None and other != tx.txid:
                    self._remove_recursive(other, "conflict")
        if self.ibd and bi.header.time >= self.now() - MAX_TIP_AGE:
            self.ibd = False
        for wallet in self.wallet_store.values():
            wallet.on_block_connected(bi)

    def _notify_block_connected(self, bi):
        if self.zmq:
            for tx in bi.txs:
                self.zmq.publish("hashtx", tx.txid[::-1])
                self.zmq.publish("rawtx", tx.serialize(True))
            self.zmq.publish("sequence", bi.hash[::-1] + b"C")

    def _updated_block_tip(self):
        if self.zmq and not self.ibd:
            tip = self.tip
            self.zmq.publish("hashblock", tip.hash[::-1])
            self.zmq.publish("rawblock", tip.raw if tip.raw is not None else serialize_block(tip.header, tip.txs))

    def _disconnect_tip(self):
        bi = self.chain.pop()
        for pos in range(len(bi.txs) - 1, -1, -1):
            tx = bi.txs[pos]
            txid = tx.txid
            for n in range(len(tx.vout)):
                self.utxo.pop((txid, n), None)
            self.tx_index.pop(txid, None)
            if pos > 0:
                for inp, coin in zip(tx.vin, bi.undo[pos]):
                    self.utxo[inp.outpoint] = coin
                    self.spent_by.pop(inp.outpoint, None)
        if self.zmq:
            for tx in bi.txs:
                self.zmq.publish("hashtx", tx.txid[::-1])
                self.zmq.publish("rawtx", tx.serialize(True))
            self.zmq.publish("sequence", bi.hash[::-1] + b"D")
        for wallet in self.wallet_store.values():
            wallet.on_block_disconnected(bi)
        return list(bi.txs[1:])

    def _update_mempool_for_reorg(self, txs, add=True):
        if add:
            for tx in txs:
                try:
                    self.accept_to_mempool(tx, bypass_limits=True, unbroadcast=False)
                except TxReject:
                    pass
        # Drop what no longer fits the new tip (spends of vanished or immature coins, non-final).
        changed = True
        while changed:
            changed = False
            for txid, entry in list(self.mempool.items()):
                if txid not in self.mempool:
                    continue
                if not self._still_valid_in_mempool(entry.tx):
                    self._remove_recursive(txid, "reorg")
                    changed = True

    def _still_valid_in_mempool(self, tx):
        spend_height = self.tip.height + 1
        for inp in tx.vin:
            coin = self.spendable_coin(inp.outpoint)
            if coin is None:
                return False
            if coin.coinbase and spend_height - coin.height < COINBASE_MATURITY:
                return False
        return self._is_final(tx, spend_height, self.tip.median_time_past())

    @staticmethod
    def _script_error(inp, coin):
        """What script verification would say of an input the double cannot really verify."""
        kind, _ = solve_script(coin.script)
        if kind in ("witness_v0_keyhash", "witness_v0_scripthash", "witness_v1_taproot"):
            if inp.script_sig:
                return "Witness requires empty scriptSig"
            if kind == "witness_v0_keyhash" and len(inp.witness) != 2:
                return "Witness program hash mismatch"
            if not inp.witness:
                return "Witness program was passed an empty witness"
        elif kind in ("pubkeyhash", "pubkey", "scripthash") and not inp.script_sig:
            return "Operation not valid with the current stack size"
        return None

    @staticmethod
    def _is_final(tx, height, block_time):
        if tx.locktime == 0:
            return True
        if tx.locktime < (height if tx.locktime < 500_000_000 else block_time):
            return True
        return all(i.sequence == 0xFFFFFFFF for i in tx.vin)

    def _best_candidate(self):
        tip = self.tip
        best = tip if not tip.invalid() else None
        for bi in self.blocks.values():
            if bi.invalid() or not (bi.have_data or self.in_active_chain(bi)):
                continue
            if best is None or bi.chainwork > best.chainwork or (
                    bi.chainwork == best.chainwork and best is not tip and bi.seq_id < best.seq_id):
                best = bi
        return best

    def activate_best_chain(self):
        best = self._best_candidate()
        tip = self.tip
        if best is None or best is tip:
            return
        fork = best
        while not self.in_active_chain(fork):
            fork = fork.prev
        starting_work = tip.chainwork
        disconnected = []
        while self.tip is not fork:
            disconnected = self._disconnect_tip() + disconnected
        path = []
        b = best
        while b is not fork:
            path.append(b)
            b = b.prev
        path.reverse()
        first = []
        i = 0
        while i < len(path):
            self._connect_block(path[i])
            first.append(path[i])
            i += 1
            if self.tip.chainwork > starting_work:
                break
        if disconnected:
            self._update_mempool_for_reorg(disconnected)
        for bi in first:
            self._notify_block_connected(bi)
        self._updated_block_tip()
        while i < len(path):
            self._connect_block(path[i])
            self._notify_block_connected(path[i])
            self._updated_block_tip()
            i += 1

    def submit_block(self, header, txs):
        known = self.blocks.get(header.hash())
        if known is not None:
            # ProcessNewBlock of a block we have: fine if valid, refused if marked invalid.
            if known.invalid():
                raise RpcError(-32603, "ProcessNewBlock, block not accepted")
            self.activate_best_chain()
            return known
        prev = self.blocks[header.prev]
        bi = BlockIndex(header, prev.height + 1, prev, txs, self._next_block_seq())
        self.blocks[bi.hash] = bi
        prev.children.append(bi)
        self._store_block(bi)
        if prev is self.tip:
            self._connect_block(bi)
            self._notify_block_connected(bi)
            self._updated_block_tip()
        else:
            self.activate_best_chain()
        return bi

    def invalidate(self, bi):
        bi.failed = True
        for other in bi.descendants():
            other.failed_child = True
        while self.in_active_chain(bi):
            txs = self._disconnect_tip()
            self._update_mempool_for_reorg(txs)
        self.activate_best_chain()

    def reconsider(self, bi):
        b = bi
        while b is not None:
            b.failed = b.failed_child = False
            b = b.prev
        for other in bi.descendants():
            other.failed = other.failed_child = False
        self.activate_best_chain()

    # mining

    def subsidy(self, height):
        halvings = height // HALVING_INTERVAL
        return 0 if halvings >= 64 else (50 * COIN) >> halvings

    def create_block(self, script, txs, claim_fees=True):
        """A block on the tip paying `script`, holding `txs` (already ordered); checks that the
        transactions connect, like TestBlockValidity. Returns (header, all txs)."""
        tip = self.tip
        height = tip.height + 1
        spent = set()
        created = {}
        fees = 0
        mtp = tip.median_time_past()
        for tx in txs:
            if tx.is_coinbase() or not tx.vin:
                raise TxReject("invalid", "bad-cb-multiple" if tx.is_coinbase() else "bad-txns-vin-empty")
            value_in = 0
            for inp in tx.vin:
                op = inp.outpoint
                if op in spent:
                    raise TxReject("invalid", "bad-txns-inputs-missingorspent")
                if op in created:
                    value_in += created[op].value
                else:
                    coin = self.utxo.get(op)
                    if coin is None:
                        raise TxReject("invalid", "bad-txns-inputs-missingorspent")
                    if coin.coinbase and height - coin.height < COINBASE_MATURITY:
                        raise TxReject("invalid", "bad-txns-premature-spend-of-coinbase")
                    value_in += coin.value
                spent.add(op)
            if value_in < tx.value_out():
                raise TxReject("invalid", "bad-txns-in-belowout")
            if not self._is_final(tx, height, mtp):
                raise TxReject("invalid", "bad-txns-nonfinal")
            fees += value_in - tx.value_out()
            for n, out in enumerate(tx.vout):
                created[(tx.txid, n)] = out
        script_sig = push_int(height)
        if len(script_sig) < 2:
            script_sig += bytes([OP_0])
        reserved = b"\x00" * 32
        witness_root = merkle_root([b"\x00" * 32] + [t.wtxid for t in txs])
        commitment = b"\x6a\x24\xaa\x21\xa9\xed" + sha256d(witness_root + reserved)
        coinbase = Tx(2, [TxIn(b"\x00" * 32, 0xFFFFFFFF, script_sig, 0xFFFFFFFE, [reserved])],
                      [TxOut(self.subsidy(height) + (fees if claim_fees else 0), script), TxOut(0, commitment)],
                      height - 1)
        all_txs = [coinbase] + list(txs)
        self.last_template = (8000 + sum(t.weight for t in txs), len(txs))
        header = Header(BLOCK_VERSION, tip.hash, merkle_root([t.txid for t in all_txs]),
                        max(mtp + 1, self.now()), REGTEST_BITS, 0)
        target = bits_to_target(REGTEST_BITS)
        prefix = header.serialize()[:76]
        nonce = 0
        while int.from_bytes(sha256d(prefix + struct.pack("<I", nonce)), "little") > target:
            nonce += 1
        header.nonce = nonce
        return header, all_txs

    def template_txs(self):
        """Mempool transactions by chunk feerate (each cluster's chunks in order), within the
        block weight."""
        chunks, seen = [], set()
        for txid, entry in sorted(self.mempool.items(), key=lambda kv: kv[1].seq):
            if txid in seen:
                continue
            cluster = self.mempool_cluster_chunks(txid)
            for rank, chunk in enumerate(cluster):
                seen.update(chunk[3])
                chunks.append((chunk, len(chunks), rank))
        # Highest feerate first; a cluster's chunks keep their order (feerates do not increase).
        chunks.sort(key=lambda c: (-c[0][0] / max(1, c[0][1]), c[1]))
        ordered, placed, weight = [], set(), 8000
        for chunk, _, _ in chunks:
            if weight + chunk[2] > MAX_BLOCK_WEIGHT:
                continue
            if not all(p in placed for t in chunk[3] for p in self.mempool_parents(self.mempool[t].tx)
                       if p not in chunk[3]):
                continue
            for t in chunk[3]:
                ordered.append(self.mempool[t].tx)
                placed.add(t)
            weight += chunk[2]
        return ordered

    def mine(self, script, txs=None):
        header, all_txs = self.create_block(script, self.template_txs() if txs is None else txs)
        return self.submit_block(header, all_txs)

    # mempool

    def _mempool_remove(self, txid, reason):
        entry = self.mempool.pop(txid)
        for inp in entry.tx.vin:
            if self.mempool_spends.get(inp.outpoint) == txid:
                del self.mempool_spends[inp.outpoint]
        seq = self.mempool_seq
        self.mempool_seq += 1
        if reason != "block" and self.zmq:
            self.zmq.publish("sequence", txid[::-1] + b"R" + struct.pack("<Q", seq))

    def mempool_children(self, txid):
        entry = self.mempool.get(txid)
        if entry is None:
            return []
        out = []
        for n in range(len(entry.tx.vout)):
            child = self.mempool_spends.get((txid, n))
            if child is not None and child not in out:
                out.append(child)
        return out

    def mempool_parents(self, tx):
        return list(dict.fromkeys(i.prev_txid for i in tx.vin if i.prev_txid in self.mempool))

    def mempool_descendants(self, txid):
        out, frontier = [], [txid]
        while frontier:
            t = frontier.pop(0)
            for c in self.mempool_children(t):
                if c not in out:
                    out.append(c)
                    frontier.append(c)
        return out

    def mempool_ancestors(self, txid):
        out, frontier = [], [txid]
        while frontier:
            t = frontier.pop(0)
            entry = self.mempool.get(t)
            if entry is None:
                continue
            for p in self.mempool_parents(entry.tx):
                if p not in out:
                    out.append(p)
                    frontier.append(p)
        return out

    def mempool_cluster_chunks(self, txid):
        """The chunks of txid's cluster, as [fee, vsize, weight, [txids]] in linearization order
        (greedy by feerate, parents first), merging a chunk into the one before it while its
        feerate is higher."""
        cluster, frontier = {txid}, [txid]
        while frontier:
            t = frontier.pop()
            entry = self.mempool[t]
            for other in self.mempool_parents(entry.tx) + self.mempool_children(t):
                if other not in cluster:
                    cluster.add(other)
                    frontier.append(other)
        # Linearize: repeatedly the best-feerate transaction whose parents are placed.
        order, placed = [], set()
        pending = sorted(cluster, key=lambda t: self.mempool[t].seq)
        while pending:
            ready = [t for t in pending
                     if all(p in placed or p not in cluster for p in self.mempool_parents(self.mempool[t].tx))]
            if not ready:
                order += pending
                break
            best = max(ready, key=lambda t: (self.mempool[t].fee / self.mempool[t].tx.vsize, -self.mempool[t].seq))
            order.append(best)
            placed.add(best)
            pending.remove(best)
        chunks = []
        for t in order:
            e = self.mempool[t]
            chunks.append([e.fee, e.tx.vsize, e.tx.weight, [t]])
            while len(chunks) > 1 and chunks[-1][0] * chunks[-2][1] > chunks[-2][0] * chunks[-1][1]:
                last = chunks.pop()
                chunks[-1] = [chunks[-1][0] + last[0], chunks[-1][1] + last[1], chunks[-1][2] + last[2],
                              chunks[-1][3] + last[3]]
        return chunks

    def mempool_chunk(self, txid):
        for chunk in self.mempool_cluster_chunks(txid):
            if txid in chunk[3]:
                return chunk
        raise KeyError(txid)

    def _remove_recursive(self, txid, reason):
        for t in [txid] + self.mempool_descendants(txid):
            if t in self.mempool:
                self._mempool_remove(t, reason)

    def accept_to_mempool(self, tx, *, bypass_limits=False, test_only=False, unbroadcast=True,
                          max_fee_kvb=None):
        """AcceptToMemoryPool: returns {"fee", "vsize", "replaced"} or raises TxReject."""
        txid = tx.txid
        if not tx.vin:
            raise TxReject("invalid", "bad-txns-vin-empty")
        if not tx.vout:
            raise TxReject("invalid", "bad-txns-vout-empty")
        if tx.stripped_size * 4 > MAX_BLOCK_WEIGHT:
            raise TxReject("invalid", "bad-txns-oversize")
        total = 0
        for out in tx.vout:
            if out.value < 0:
                raise TxReject("invalid", "bad-txns-vout-negative")
            if out.value > MAX_MONEY:
                raise TxReject("invalid", "bad-txns-vout-toolarge")
            total += out.value
            if total > MAX_MONEY:
                raise TxReject("invalid", "bad-txns-txouttotal-toolarge")
        if len({i.outpoint for i in tx.vin}) != len(tx.vin):
            raise TxReject("invalid", "bad-txns-inputs-duplicate")
        if tx.is_coinbase():
            raise TxReject("invalid", "coinbase")
        if not 1 <= tx.version <= 3:
            raise TxReject("invalid", "version")
        if tx.weight > 400_000:
            raise TxReject("invalid", "tx-size")
        if tx.stripped_size < 65:
            raise TxReject("invalid", "tx-size-small")
        for inp in tx.vin:
            if len(inp.script_sig) > 1650:
                raise TxReject("invalid", "scriptsig-size")
            if not is_push_only(inp.script_sig):
                raise TxReject("invalid", "scriptsig-not-pushonly")
        for out in tx.vout:
            kind, _ = solve_script(out.script)
            if kind == "nonstandard":
                raise TxReject("invalid", "scriptpubkey")
            if kind != "nulldata" and out.value < dust_threshold(out.script):
                raise TxReject("invalid", "dust")
        tip = self.tip
        if not self._is_final(tx, tip.height + 1, tip.median_time_past()):
            raise TxReject("invalid", "non-final")
        if txid in self.mempool:
            same = self.mempool[txid].tx.wtxid == tx.wtxid
            raise TxReject("invalid", "txn-already-in-mempool" if same else "txn-same-nonwitness-data-in-mempool")
        if len(self.mempool) >= MAX_MEMPOOL_TXS:
            raise TxReject("invalid", "mempool full")
        conflicts = []
        coins = []
        missing = False
        for inp in tx.vin:
            other = self.mempool_spends.get(inp.outpoint)
            if other is not None and other not in conflicts:
                conflicts.append(other)
            coin = self.spendable_coin(inp.outpoint)
            if coin is None:
                missing = True
            coins.append(coin)
        if missing:
            if any((txid, n) in self.utxo for n in range(len(tx.vout))):
                raise TxReject("invalid", "txn-already-known")
            raise TxReject("missing_inputs", "bad-txns-inputs-missingorspent")
        all_conflicts = []
        for c in conflicts:
            for t in [c] + self.mempool_descendants(c):
                if t not in all_conflicts:
                    all_conflicts.append(t)
        if any(i.prev_txid in all_conflicts for i in tx.vin):
            raise TxReject("invalid", "bad-txns-spends-conflicting-tx")
        spend_height = tip.height + 1
        for coin in coins:
            if coin.coinbase and spend_height - coin.height < COINBASE_MATURITY:
                raise TxReject("invalid", "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth "
                                          f"{spend_height - coin.height}")
        value_in = sum(c.value for c in coins)
        if value_in < tx.value_out():
            raise TxReject("invalid", f"bad-txns-in-belowout, value in ({format_money(value_in)}) < value out "
                                      f"({format_money(tx.value_out())})")
        fee = value_in - tx.value_out()
        vsize = tx.vsize
        if not bypass_limits:
            min_fee = fee_for(MIN_RELAY_FEE_KVB, vsize)
            if fee < min_fee:
                raise TxReject("invalid", f"min relay fee not met, {fee} < {min_fee}")
        if all_conflicts:
            if len(all_conflicts) > 100:
                raise TxReject("invalid", f"too many potential replacements, rejecting replacement {tx.txid_hex}; "
                                          f"too many potential replacements ({len(all_conflicts)} > 100)")
            old_fees = sum(self.mempool[t].fee for t in all_conflicts)
            if fee < old_fees:
                raise TxReject("invalid", f"insufficient fee, rejecting replacement {tx.txid_hex}, less fees than "
                                          f"conflicting txs; {format_money(fee)} < {format_money(old_fees)}")
            needed = fee_for(INCREMENTAL_RELAY_FEE_KVB, vsize)
            if fee - old_fees < needed:
                raise TxReject("invalid", f"insufficient fee, rejecting replacement {tx.txid_hex}, not enough "
                                          f"additional fees to relay; {format_money(fee - old_fees)} < "
                                          f"{format_money(needed)}")
            for c in conflicts:
                old = self.mempool[c]
                if fee * old.tx.vsize <= old.fee * vsize:
                    raise TxReject("invalid", "insufficient feerate: does not improve feerate diagram")
        for k, (inp, coin) in enumerate(zip(tx.vin, coins)):
            error = self._script_error(inp, coin)
            if error:
                raise TxReject("invalid", f"mempool-script-verify-flag-failed ({error})",
                               f"input {k} of {tx.txid_hex} (wtxid {tx.wtxid_hex}), spending "
                               f"{inp.prev_txid[::-1].hex()}:{inp.prev_n}")
        if max_fee_kvb is not None and fee > fee_for(max_fee_kvb, vsize):
            raise TxReject("max_fee", "max-fee-exceeded")
        if test_only:
            return {"fee": fee, "vsize": vsize, "replaced": all_conflicts}
        for t in all_conflicts:
            if t in self.mempool:
                self._mempool_remove(t, "replaced")
        self.entry_seq += 1
        self.mempool[txid] = MempoolEntry(tx, fee, self.now(), tip.height, unbroadcast, self.entry_seq)
        for inp in tx.vin:
            self.mempool_spends[inp.outpoint] = txid
        self.known_txs[txid] = tx
        seq = self.mempool_seq
        self.mempool_seq += 1
        if self.zmq:
            self.zmq.publish("hashtx", txid[::-1])
            self.zmq.publish("rawtx", tx.serialize(True))
            self.zmq.publish("sequence", txid[::-1] + b"A" + struct.pack("<Q", seq))
        for wallet in self.wallet_store.values():
            wallet.on_transaction(tx, None)
            for t in all_conflicts:
                wallet.mark_replaced(t, txid)
        return {"fee": fee, "vsize": vsize, "replaced": all_conflicts}


# --- wallet ---------------------------------------------------------------------------------

WALLET_KINDS = {"bech32": ("wpkh", 84), "bech32m": ("tr", 86), "legacy": ("pkh", 44), "p2sh-segwit": ("sh", 49)}
# Maximum signed input sizes as the wallet estimates them: (non-witness bytes, witness bytes).
INPUT_SIZES = {"bech32": (41, 108), "bech32m": (41, 67), "legacy": (148, 1), "p2sh-segwit": (64, 108)}
OUTPUT_TYPE_OF_SCRIPT = {"witness_v0_keyhash": "bech32", "witness_v1_taproot": "bech32m", "pubkeyhash": "legacy",
                         "scripthash": "p2sh-segwit"}


class WalletKey:
    __slots__ = ("script", "kind", "pubkey", "secret", "internal", "index", "address", "desc", "parent_desc")


class WalletTx:
    __slots__ = ("tx", "time_received", "time", "replaced_by", "replaces", "abandoned", "order")

    def __init__(self, tx, time_received, time_, order):
        self.tx = tx
        self.time_received = time_received
        self.time = time_
        self.replaced_by = None
        self.replaces = None
        self.abandoned = False
        self.order = order


class Wallet:
    def __init__(self, node, name, disable_private_keys=False, blank=False, avoid_reuse=False):
        self.node = node
        self.name = name
        self.seed = secrets.token_bytes(32)
        self.fingerprint = hash160(self.seed)[:4].hex()
        self.birthtime = node.now()
        self.private_keys_enabled = not disable_private_keys
        self.blank = blank
        self.avoid_reuse = avoid_reuse
        self.keys = {}
        self.address_book = {}
        self.counters = {}
        self.topped_up = {}
        self.txs = {}
        self.spends = {}
        self.locked = set()
        self.order = 0

    # keys

    def _xpub(self, kind, internal):
        purpose = WALLET_KINDS[kind][1]
        data = bytes.fromhex("043587cf") + b"\x03" + bytes.fromhex(self.fingerprint) + b"\x80\x00\x00\x00"
        data += sha256(self.seed + f"chain{purpose}{int(internal)}".encode())
        data += b"\x02" + sha256(self.seed + f"xpub{purpose}".encode())
        return base58check_encode(data)

    def derive(self, kind, internal, commit=True):
        counter = (kind, internal)
        index = self.counters.get(counter, 0)
        if commit:
            self.counters[counter] = index + 1
        secret = sha256(self.seed + f"{kind}/{int(internal)}/{index}".encode())
        pubkey = bytes([2 + (secret[0] & 1)]) + sha256(secret + b"pub")
        family, purpose = WALLET_KINDS[kind]
        origin = f"[{self.fingerprint}/{purpose}h/1h/0h/{int(internal)}/{index}]"
        xpub = f"[{self.fingerprint}/{purpose}h/1h/0h]{self._xpub(kind, internal)}/{int(internal)}/*"
        if kind == "bech32":
            script = b"\x00\x14" + hash160(pubkey)
            desc, parent = f"wpkh({origin}{pubkey.hex()})", f"wpkh({xpub})"
        elif kind == "bech32m":
            script = b"\x51\x20" + pubkey[1:]
            desc, parent = f"tr({origin}{pubkey[1:].hex()})", f"tr({xpub})"
        elif kind == "legacy":
            script = b"\x76\xa9\x14" + hash160(pubkey) + b"\x88\xac"
            desc, parent = f"pkh({origin}{pubkey.hex()})", f"pkh({xpub})"
        else:
            redeem = b"\x00\x14" + hash160(pubkey)
            script = b"\xa9\x14" + hash160(redeem) + b"\x87"
            desc, parent = f"sh(wpkh({origin}{pubkey.hex()}))", f"sh(wpkh({xpub}))"
        key = WalletKey()
        key.script, key.kind, key.pubkey, key.secret = script, kind, pubkey, secret
        key.internal, key.index, key.address = internal, index, script_address(script)
        key.desc, key.parent_desc = descsum_create(desc), descsum_create(parent)
        if commit:
            self.keys[script] = key
        return key

    def new_address(self, kind, label=""):
        key = self.derive(kind, False)
        self.address_book[key.script] = label
        return key.address

    def keypool_size(self, internal):
        """1000 keys ahead per descriptor (4 of them per chain), topped up when one is used."""
        pending = sum(n - self.topped_up.get((k, i), 0) for (k, i), n in self.counters.items() if i == internal)
        return max(0, 4000 - pending)

    def is_mine(self, script):
        return script in self.keys

    def is_change(self, script):
        return script in self.keys and script not in self.address_book

    # transactions

    def _relevant(self, tx):
        if any(o.script in self.keys for o in tx.vout):
            return True
        for inp in tx.vin:
            out = self.node.find_txout(inp.outpoint)
            if out is not None and out.script in self.keys:
                return True
        return False

    def on_transaction(self, tx, block):
        txid = tx.txid
        wtx = self.txs.get(txid)
        if wtx is None:
            if not self._relevant(tx):
                return
            self.order += 1
            now = self.node.now()
            wtx = WalletTx(tx, now, block.header.time if block is not None else now, self.order)
            self.txs[txid] = wtx
            if not tx.is_coinbase():
                for inp in tx.vin:
                    self.spends.setdefault(inp.outpoint, set()).add(txid)
        else:
            wtx.tx = tx
        if block is not None:
            wtx.abandoned = False
        for o in tx.vout:
            key = self.keys.get(o.script)
            if key is not None:
                self.topped_up[(key.kind, key.internal)] = self.counters.get((key.kind, key.internal), 0)

    def on_block_connected(self, bi):
        for tx in bi.txs:
            self.on_transaction(tx, bi)

    def on_block_disconnected(self, bi):
        coinbase = self.txs.get(bi.txs[0].txid)
        if coinbase is not None:
            coinbase.abandoned = True

    def mark_replaced(self, old_txid, new_txid):
        old = self.txs.get(old_txid)
        new = self.txs.get(new_txid)
        if old is not None and new is not None and old.replaced_by is None:
            old.replaced_by = new_txid[::-1].hex()
            if new.replaces is None:
                new.replaces = old_txid[::-1].hex()

    def depth(self, txid, _level=0):
        loc = self.node.tx_index.get(txid)
        if loc is not None:
            return self.node.tip.height - loc[0].height + 1
        wtx = self.txs.get(txid)
        if wtx is None or wtx.tx.is_coinbase():
            return 0
        deepest = None
        for inp in wtx.tx.vin:
            spender = self.node.spent_by.get(inp.outpoint)
            if spender is not None and spender[0] != txid:
                deepest = spender[1] if deepest is None else min(deepest, spender[1])
        if deepest is not None:
            return -(self.node.tip.height - deepest + 1)
        if _level < 32:
            for inp in wtx.tx.vin:
                if inp.prev_txid in self.txs and inp.prev_txid not in self.node.tx_index:
                    d = self.depth(inp.prev_txid, _level + 1)
                    if d < 0:
                        return d
        return 0

    def blocks_to_maturity(self, wtx, depth):
        if not wtx.tx.is_coinbase():
            return 0
        return max(0, COINBASE_MATURITY + 1 - depth)

    def is_trusted(self, txid, _level=0):
        d = self.depth(txid)
        if d >= 1:
            return True
        if d < 0 or txid not in self.node.mempool or _level > 32:
            return False
        for inp in self.txs[txid].tx.vin:
            parent = self.txs.get(inp.prev_txid)
            if parent is None or parent.tx.vout[inp.prev_n].script not in self.keys:
                return False
            if not self.is_trusted(inp.prev_txid, _level + 1):
                return False
        return True

    def is_spent(self, outpoint):
        for txid in self.spends.get(outpoint, ()):
            wtx = self.txs[txid]
            d = self.depth(txid)
            if d > 0 or (d == 0 and not wtx.abandoned):
                return True
        return False

    def mempool_conflicts(self, txid, _level=0):
        """Mempool transactions spending what txid (or a wallet parent of it) spends."""
        wtx = self.txs.get(txid)
        out = []
        if wtx is None or wtx.tx.is_coinbase():
            return out
        for inp in wtx.tx.vin:
            other = self.node.mempool_spends.get(inp.outpoint)
            if other is not None and other != txid and other not in out:
                out.append(other)
            if _level < 32 and inp.prev_txid in self.txs and inp.prev_txid not in self.node.tx_index:
                for t in self.mempool_conflicts(inp.prev_txid, _level + 1):
                    if t not in out:
                        out.append(t)
        return out

    def debit(self, tx):
        total = 0
        for inp in tx.vin:
            out = self.node.find_txout(inp.outpoint)
            if out is not None and out.script in self.keys:
                total += out.value
        return total

    def all_inputs_mine(self, tx):
        for inp in tx.vin:
            out = self.node.find_txout(inp.outpoint)
            if out is None or out.script not in self.keys:
                return False
        return True

    def balances(self):
        trusted = untrusted = immature = nonmempool = 0
        for txid, wtx in self.txs.items():
            d = self.depth(txid)
            if wtx.tx.is_coinbase():
                if d <= 0:
                    continue
                if self.blocks_to_maturity(wtx, d) > 0:
                    immature += sum(o.value for o in wtx.tx.vout if o.script in self.keys)
                    continue
            if d < 0:
                continue
            credit = sum(o.value for n, o in enumerate(wtx.tx.vout)
                         if o.script in self.keys and not self.is_spent((txid, n)))
            if d >= 1:
                trusted += credit
            elif txid in self.node.mempool:
                if self.is_trusted(txid):
                    trusted += credit
                else:
                    untrusted += credit
            elif not wtx.abandoned and not self.mempool_conflicts(txid):
                nonmempool += credit
        return trusted, untrusted, immature, nonmempool

    def available_coins(self, include_unsafe=False, min_conf=0, max_conf=9999999):
        """[(outpoint, TxOut, depth, safe)] the wallet may spend."""
        out = []
        for txid, wtx in self.txs.items():
            d = self.depth(txid)
            if d < 0:
                continue
            if wtx.tx.is_coinbase() and (d <= 0 or self.blocks_to_maturity(wtx, d) > 0):
                continue
            safe = True
            if d == 0:
                if txid not in self.node.mempool:
                    continue
                safe = self.is_trusted(txid)
                if not safe and not include_unsafe:
                    continue
            if d < min_conf or d > max_conf:
                continue
            for n, o in enumerate(wtx.tx.vout):
                op = (txid, n)
                if o.script in self.keys and op not in self.locked and not self.is_spent(op):
                    out.append((op, o, d, safe))
        return out

    # funding and signing

    def input_kind(self, script):
        key = self.keys.get(script)
        if key is not None:
            return key.kind
        return OUTPUT_TYPE_OF_SCRIPT.get(solve_script(script)[0], "bech32")

    @staticmethod
    def estimate_vsize(input_sizes, outputs, extra_outputs=()):
        outs = list(outputs) + list(extra_outputs)
        nonwit = 4 + len(ser_compact(len(input_sizes))) + sum(s[0] for s in input_sizes)
        nonwit += len(ser_compact(len(outs))) + sum(len(o.serialize()) for o in outs) + 4
        witness = 0
        if any(s[1] > 1 for s in input_sizes):
            witness = 2 + sum(s[1] for s in input_sizes)
        return (nonwit * 4 + witness + 3) // 4

    def _input_size(self, inp, txout):
        if inp.witness or inp.script_sig:
            wit = len(ser_compact(len(inp.witness))) + sum(len(ser_compact(len(w))) + len(w) for w in inp.witness)
            return (40 + len(ser_compact(len(inp.script_sig))) + len(inp.script_sig), max(1, wit))
        return INPUT_SIZES[self.input_kind(txout.script)]

    def change_type(self, outputs, requested=None):
        if requested:
            return requested
        kinds = [solve_script(o.script)[0] for o in outputs]
        if "witness_v1_taproot" in kinds:
            return "bech32m"
        if "witness_v0_keyhash" in kinds:
            return "bech32"
        if "scripthash" in kinds:
            return "p2sh-segwit"
        if "pubkeyhash" in kinds:
            return "legacy"
        return "bech32m"

    def fund(self, tx, rate_kvb, add_inputs=True, change_type=None, change_pos=None, subtract_from=(),
             lock=False, include_unsafe=False, replaceable=True, min_conf=0):
        """Adds inputs and a change output to `tx` (as fundrawtransaction does). Returns
        (new tx, fee, change position). Raises RpcError(-4, ...) as CreateTransaction fails."""
        preset = []
        for inp in tx.vin:
            out = self.node.find_txout(inp.outpoint)
            if out is None:
                raise RpcError(-4, "Unable to find UTXO for external input")
            preset.append((inp, out))
        outputs = [TxOut(o.value, o.script) for o in tx.vout]
        for o in outputs:
            if o.value < 0:
                raise RpcError(-4, "Transaction amounts must not be negative")
            if o.value < dust_threshold(o.script):
                raise RpcError(-4, "Transaction amount too small")
        recipients = sum(o.value for o in outputs)
        noinputs_size = 10 + len(ser_compact(len(outputs))) + sum(len(o.serialize()) for o in outputs)
        not_input_fees = fee_for(rate_kvb, noinputs_size)
        if recipients == 0 and rate_kvb == 0 and not preset:
            raise RpcError(-4, "Transaction requires one destination of non-zero value, a non-zero feerate, or a "
                               "pre-selected input")
        ctype = self.change_type(outputs, change_type)
        change_key = self.derive(ctype, True, commit=False)
        change_out = TxOut(0, change_key.script)
        preset_sizes = [self._input_size(i, o) for i, o in preset]
        preset_value = sum(o.value for _, o in preset)
        used = {i.outpoint for i, _ in preset}
        candidates = [c for c in self.available_coins(include_unsafe=include_unsafe, min_conf=min_conf)
                      if c[0] not in used] if add_inputs else []
        sffo = bool(subtract_from)
        out_bytes = sum(len(o.serialize()) for o in outputs)
        change_bytes = len(change_out.serialize())

        def vsize(sizes, with_change):
            n_out = len(outputs) + int(with_change)
            nonwit = (8 + len(ser_compact(len(sizes))) + sum(z[0] for z in sizes) + len(ser_compact(n_out)) +
                      out_bytes + (change_bytes if with_change else 0))
            witness = 2 + sum(z[1] for z in sizes) if any(z[1] > 1 for z in sizes) else 0
            return (nonwit * 4 + witness + 3) // 4

        def evaluate(selected):
            sizes = preset_sizes + [INPUT_SIZES[self.input_kind(c[1].script)] for c in selected]
            total = preset_value + sum(c[1].value for c in selected)
            fee_change = fee_for(rate_kvb, vsize(sizes, True))
            fee_plain = fee_for(rate_kvb, vsize(sizes, False))
            if sffo:
                if total < recipients:
                    return None
                change = total - recipients
                if change >= dust_threshold(change_out.script):
                    return fee_change, change
                return fee_plain, 0
            change = total - recipients - fee_change
            if change >= dust_threshold(change_out.script):
                return fee_change, change
            if total - recipients >= fee_plain:
                return total - recipients, 0
            return None

        selected = None
        if preset and evaluate([]) is not None:
            selected = []
        if selected is None and candidates:
            singles = [c for c in candidates if evaluate([c]) is not None]
            if singles:
                # The cheapest input to spend first (least waste at our fee rates), then the
                # smallest coin that covers the payment.
                singles.sort(key=lambda c: (INPUT_SIZES[self.input_kind(c[1].script)][0] * 4 +
                                            INPUT_SIZES[self.input_kind(c[1].script)][1],
                                            not c[3], c[1].value, c[0]))
                selected = [singles[0]]
            else:
                acc = []
                for c in sorted(candidates, key=lambda c: (-c[1].value, c[0])):
                    acc.append(c)
                    if evaluate(acc) is not None:
                        selected = acc
                        break
        if selected is None:
            available = preset_value + sum(c[1].value for c in candidates)
            if available >= recipients and not sffo:
                raise RpcError(-4, f"The total exceeds your balance when the {format_money(not_input_fees)} "
                                   "transaction fee is included.")
            raise RpcError(-4, "Insufficient funds")
        fee, change = evaluate(selected)
        if sffo:
            # The recipients named pay the fee, in equal parts (the first one any remainder).
            share, rem = divmod(fee, len(subtract_from))
            for k, idx in enumerate(subtract_from):
                outputs[idx].value -= share + (rem if k == 0 else 0)
                if outputs[idx].value < dust_threshold(outputs[idx].script):
                    raise RpcError(-4, "The transaction amount is too small to pay the fee")
        default_seq = 0xFFFFFFFD if replaceable else 0xFFFFFFFE
        vin = [i.copy() for i, _ in preset] + [TxIn(c[0][0], c[0][1], b"", default_seq) for c in selected]
        change_pos_out = -1
        if change > 0:
            change_out.value = change
            if change_pos is None or change_pos < 0:
                change_pos = random.randrange(len(outputs) + 1)
            if change_pos > len(outputs):
                raise RpcError(-8, "Change position is out of range")
            outputs.insert(change_pos, change_out)
            change_pos_out = change_pos
            self.derive(ctype, True, commit=True)
        if lock:
            self.locked.update(c[0] for c in selected)
        return Tx(tx.version, vin, outputs, tx.locktime), fee, change_pos_out

    @staticmethod
    def _der_signature(secret, msg):
        r = bytearray(sha256(b"r" + secret + msg))
        s = bytearray(sha256(b"s" + secret + msg))
        r[0] = (r[0] & 0x7F) | 0x01
        s[0] = (s[0] & 0x3F) | 0x01
        body = b"\x02\x20" + bytes(r) + b"\x02\x20" + bytes(s)
        return b"\x30" + bytes([len(body)]) + body + b"\x01"

    def sign(self, tx):
        """signrawtransactionwithwallet: (signed tx, complete, errors)."""
        new = tx.copy()
        blank = Tx(tx.version, [TxIn(i.prev_txid, i.prev_n, b"", i.sequence) for i in tx.vin],
                   [TxOut(o.value, o.script) for o in tx.vout], tx.locktime).serialize(False)
        errors = []
        for idx, inp in enumerate(new.vin):
            out = self.node.find_txout(inp.outpoint)
            if out is None or self.node.spendable_coin(inp.outpoint) is None:   # findCoins: UTXO set + mempool
                errors.append({"txid": inp.prev_txid[::-1].hex(), "vout": inp.prev_n,
                               "witness": [w.hex() for w in inp.witness], "scriptSig": inp.script_sig.hex(),
                               "sequence": inp.sequence, "error": "Input not found or already spent"})
                continue
            key = self.keys.get(out.script)
            if key is None or not self.private_keys_enabled:
                errors.append({"txid": inp.prev_txid[::-1].hex(), "vout": inp.prev_n,
                               "witness": [w.hex() for w in inp.witness], "scriptSig": inp.script_sig.hex(),
                               "sequence": inp.sequence,
                               "error": "Unable to sign input, invalid stack size (possibly missing key)"})
                continue
            msg = sha256d(blank + struct.pack("<Iq", idx, out.value) + out.script)
            if key.kind == "bech32":
                inp.script_sig, inp.witness = b"", [self._der_signature(key.secret, msg), key.pubkey]
            elif key.kind == "p2sh-segwit":
                inp.script_sig = push_data(b"\x00\x14" + hash160(key.pubkey))
                inp.witness = [self._der_signature(key.secret, msg), key.pubkey]
            elif key.kind == "bech32m":
                inp.script_sig, inp.witness = b"", [sha256(b"R" + key.secret + msg) + sha256(b"S" + key.secret + msg)]
            else:
                inp.script_sig = push_data(self._der_signature(key.secret, msg)) + push_data(key.pubkey)
                inp.witness = []
        signed = Tx(new.version, new.vin, new.vout, new.locktime)
        return signed, not errors, errors


# --- RPC methods ----------------------------------------------------------------------------

# Arguments as RPCHelpMan declares them: "name[|alias]:type[!]" with type n(umber), s(tring),
# b(ool), o(bject), a(rray) or x (no type check: amounts, verbosity, options); ! = required.
SPECS = {
    "getblockchaininfo": "", "getnetworkinfo": "", "getzmqnotifications": "", "getblockcount": "",
    "getbestblockhash": "", "getblockhash": "height:n!", "getblockheader": "blockhash:s! verbose:b",
    "getblock": "blockhash:s! verbosity|verbose:x", "getchaintips": "", "getdifficulty": "",
    "gettxoutproof": "txids:a! blockhash:s", "verifytxoutproof": "proof:s!",
    "generatetoaddress": "nblocks:n! address:s! maxtries:n", "generateblock": "output:s! transactions:a! submit:b",
    "invalidateblock": "blockhash:s!", "reconsiderblock": "blockhash:s!", "pruneblockchain": "height:n!",
    "uptime": "", "stop": "wait:n", "getmempoolentry": "txid:s!", "getrawmempool": "verbose:b mempool_sequence:b",
    "getmempoolinfo": "", "getrawtransaction": "txid:s! verbosity|verbose:x blockhash:s",
    "decoderawtransaction": "hexstring:s! iswitness:b",
    "sendrawtransaction": "hexstring:s! maxfeerate:x maxburnamount:x",
    "testmempoolaccept": "rawtxs:a! maxfeerate:x", "estimatesmartfee": "conf_target:n! estimate_mode:s",
    "createrawtransaction": "inputs:a! outputs:x! locktime:n replaceable:b version:n",
    "setmocktime": "timestamp:n!", "getmininginfo": "", "getconnectioncount": "", "getpeerinfo": "", "ping": "",
    "help": "command:s", "validateaddress": "address:s!",
    "createwallet": "wallet_name:s! disable_private_keys:b blank:b passphrase:s avoid_reuse:b descriptors:b "
                    "load_on_startup:b external_signer:b",
    "loadwallet": "filename:s! load_on_startup:b", "unloadwallet": "wallet_name:s load_on_startup:b",
    "listwallets": "", "listwalletdir": "", "getwalletinfo": "", "getnewaddress": "label:s address_type:s",
    "getrawchangeaddress": "address_type:s", "getbalances": "",
    "getbalance": "dummy:s minconf:n include_watchonly:b avoid_reuse:b",
    "listunspent": "minconf:n maxconf:n addresses:a include_unsafe:b query_options:o",
    "sendtoaddress": "address:s! amount:x! comment:s comment_to:s subtractfeefromamount:b replaceable:b "
                     "conf_target:n estimate_mode:s avoid_reuse:b fee_rate:x verbose:b",
    "sendmany": "dummy:s amounts:o! minconf:n comment:s subtractfeefrom:a replaceable:b conf_target:n "
                "estimate_mode:s fee_rate:x verbose:b",
    "gettransaction": "txid:s! include_watchonly:b verbose:b",
    "fundrawtransaction": "hexstring:s! options:x iswitness:b",
    "signrawtransactionwithwallet": "hexstring:s! prevtxs:a sighashtype:s", "bumpfee": "txid:s! options:o",
    "abandontransaction": "txid:s!", "getaddressinfo": "address:s!",
    "double_zmqdrop": "n:n!", "double_zmqpause": "paused:b!", "double_fail": "method:s! code:n! message:s! count:n",
    "double_http500": "count:n!", "double_stall": "ms:n! count:n method:s", "double_info": "", "double_clear": "",
}
WALLET_METHODS = {"getwalletinfo", "getnewaddress", "getrawchangeaddress", "getbalances", "getbalance", "listunspent",
                  "sendtoaddress", "sendmany", "gettransaction", "fundrawtransaction",
                  "signrawtransactionwithwallet", "bumpfee",
                  "abandontransaction", "getaddressinfo"}
DOUBLE_HOOKS = {
    "double_zmqdrop": "n: publish nothing for the next n ZMQ messages, still advancing their sequence numbers",
    "double_zmqpause": "true|false: close the ZMQ PUB sockets (subscribers see a disconnect) / reopen them; "
                       "messages meanwhile are lost but numbered",
    "double_fail": "method code message [count=1]: answer the next count calls of method ('*' = any) with that error",
    "double_http500": "count: answer the next count HTTP requests with HTTP 500 and an empty body",
    "double_stall": "ms [count=1] [method]: hold the next count requests (of method) for ms before answering",
    "double_info": "hook and ZMQ counters", "double_clear": "cancel every pending hook",
}
_TYPE_NAMES = {"n": "number", "s": "string", "b": "bool", "o": "object", "a": "array"}


def _parse_spec(text):
    out = []
    for item in text.split():
        names, _, kind = item.partition(":")
        required = kind.endswith("!")
        out.append((names.split("|"), kind.rstrip("!"), required))
    return out


PARSED_SPECS = {m: _parse_spec(s) for m, s in SPECS.items()}


def help_text(method):
    args = []
    for names, _, required in PARSED_SPECS.get(method, []):
        args.append(names[0] if required else f"( {names[0]} )")
    return f"{method} {' '.join(args)}".rstrip() + "\n"


class RequestContext:
    def __init__(self, uri):
        self.uri = uri
        self.stop_requested = False


class Hooks:
    def __init__(self):
        self.fail = {}          # method -> [code, message, remaining]
        self.http500 = 0
        self.stall = []         # [ms, remaining, method or None]


class Rpc:
    def __init__(self, node, app):
        self.node = node
        self.app = app
        self.hooks = Hooks()

    # dispatch

    def execute(self, method, params, ctx):
        if not isinstance(method, str):
            raise RpcError(-32600, "Method must be a string")
        if not method.startswith("double_"):
            with self.node.lock:
                for key in (method, "*"):
                    rule = self.hooks.fail.get(key)
                    if rule and rule[2] > 0:
                        rule[2] -= 1
                        if rule[2] == 0:
                            del self.hooks.fail[key]
                        raise RpcError(rule[0], rule[1])
        spec = PARSED_SPECS.get(method)
        handler = getattr(self, "m_" + method, None)
        if spec is None or handler is None:
            raise RpcError(-32601, "Method not found")
        if params is None:
            params = []
        if isinstance(params, dict):
            params = self._named(spec, params)
        required = 0
        for i, (_, _, req) in enumerate(spec):
            if req:
                required = i + 1
        if len(params) < required or len(params) > len(spec):
            raise RpcError(-1, help_text(method))
        mismatch = {}
        for i, (names, kind, req) in enumerate(spec):
            value = params[i] if i < len(params) else None
            if kind == "x" or (value is None and not req):
                continue
            expected = _TYPE_NAMES[kind]
            if uv_type(value) != expected:
                mismatch[f"Position {i + 1} ({'|'.join(names)})"] = (
                    f"JSON value of type {uv_type(value)} is not of expected type {expected}")
        if mismatch:
            raise RpcError(-3, "Wrong type passed:\n" + json.dumps(mismatch, indent=4, ensure_ascii=False))
        params = list(params) + [None] * (len(spec) - len(params))
        with self.node.lock:
            if method in WALLET_METHODS:
                return handler(ctx, params, self._wallet_for(ctx))
            return handler(ctx, params)

    @staticmethod
    def _named(spec, obj):
        out = [None] * len(spec)
        used = 0
        for key, value in obj.items():
            for i, (names, _, _) in enumerate(spec):
                if key in names:
                    out[i] = value
                    used = max(used, i + 1)
                    break
            else:
                if key == "args" and isinstance(value, list):
                    for i, v in enumerate(value):
                        if i < len(out):
                            out[i] = v
                            used = max(used, i + 1)
                    continue
                raise RpcError(-8, f"Unknown named parameter {key}")
        return out[:used]

    def _wallet_name_from_uri(self, ctx):
        if ctx.uri.startswith("/wallet/"):
            return urllib.parse.unquote(ctx.uri[len("/wallet/"):])
        return None

    def _wallet_for(self, ctx):
        name = self._wallet_name_from_uri(ctx)
        if name is not None:
            wallet = self.node.wallets.get(name)
            if wallet is None:
                raise RpcError(-18, "Requested wallet does not exist or is not loaded")
            return wallet
        if len(self.node.wallets) == 1:
            return next(iter(self.node.wallets.values()))
        if not self.node.wallets:
            raise RpcError(-18, NO_WALLET_MESSAGE)
        raise RpcError(-19, "Multiple wallets are loaded. Please select which wallet to use by requesting the RPC "
                            "through the /wallet/<walletname> URI path.")

    # helpers

    def _block(self, value, name="blockhash"):
        bi = self.node.lookup_block(parse_hash(value, name))
        if bi is None:
            raise RpcError(-5, "Block not found")
        return bi

    @staticmethod
    def _verbosity(value, default):
        if value is None:
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, Decimal, float)):
            return get_int(value)
        raise RpcError(-1, f"JSON value of type {uv_type(value)} is not of expected type number")

    def _header_json(self, bi):
        n = self.node
        active = n.in_active_chain(bi)
        h = bi.header
        out = {"hash": bi.hash_hex, "confirmations": n.tip.height - bi.height + 1 if active else -1,
               "height": bi.height, "version": h.version, "versionHex": f"{h.version & 0xFFFFFFFF:08x}",
               "merkleroot": h.merkle[::-1].hex(), "time": h.time, "mediantime": bi.median_time_past(),
               "nonce": h.nonce, "bits": f"{h.bits:08x}", "target": f"{bits_to_target(h.bits):064x}",
               "difficulty": bits_difficulty(h.bits), "chainwork": f"{bi.chainwork:064x}", "nTx": len(bi.txs)}
        if bi.prev is not None:
            out["previousblockhash"] = bi.prev.hash_hex
        if active and bi.height < n.tip.height:
            out["nextblockhash"] = n.chain[bi.height + 1].hash_hex
        return out

    @staticmethod
    def _script_sig_json(script):
        parts = []
        try:
            for op, data in script_ops(script):
                if data is not None and len(data) > 4:
                    text = data.hex()
                    if 9 <= len(data) <= 73 and data[0] == 0x30 and data[-1] == 0x01:
                        text = data[:-1].hex() + "[ALL]"
                    parts.append(text)
                else:
                    parts.append(script_to_asm(bytes([op]) + (push_data(data)[1:] if data is not None else b"")))
        except DecodeError:
            parts.append("[error]")
        return {"asm": " ".join(parts), "hex": script.hex()}

    def _tx_json(self, tx, include_hex=True, undo_coins=None, fee=None):
        out = {"txid": tx.txid_hex, "hash": tx.wtxid_hex, "version": tx.version, "size": tx.size,
               "vsize": tx.vsize, "weight": tx.weight, "locktime": tx.locktime}
        vin = []
        coinbase = tx.is_coinbase()
        for k, inp in enumerate(tx.vin):
            entry = {}
            if coinbase:
                entry["coinbase"] = inp.script_sig.hex()
            else:
                entry["txid"] = inp.prev_txid[::-1].hex()
                entry["vout"] = inp.prev_n
                entry["scriptSig"] = self._script_sig_json(inp.script_sig)
            if inp.witness:
                entry["txinwitness"] = [w.hex() for w in inp.witness]
            if undo_coins is not None and not coinbase:
                coin = undo_coins[k]
                entry["prevout"] = {"generated": coin.coinbase, "height": coin.height, "value": Amount(coin.value),
                                    "scriptPubKey": script_pubkey_json(coin.script)}
            entry["sequence"] = inp.sequence
            vin.append(entry)
        out["vin"] = vin
        out["vout"] = [{"value": Amount(o.value), "n": n, "scriptPubKey": script_pubkey_json(o.script)}
                       for n, o in enumerate(tx.vout)]
        if fee is not None:
            out["fee"] = Amount(fee)
        if include_hex:
            out["hex"] = tx.serialize(True).hex()
        return out

    def _decode_tx(self, text, message="TX decode failed. Make sure the tx has at least one input.", witness=None):
        if not isinstance(text, str):
            raise RpcError(-3, f"JSON value of type {uv_type(text)} is not of expected type string")
        tx = decode_hex_tx(text, try_no_witness=witness is not True, try_witness=witness is not False)
        if tx is None:
            raise RpcError(-22, message)
        return tx

    def _entry_json(self, entry):
        n = self.node
        txid = entry.tx.txid
        desc = n.mempool_descendants(txid)
        anc = n.mempool_ancestors(txid)
        vsize = entry.tx.vsize
        fee = Amount(entry.fee)
        chunk = n.mempool_chunk(txid)
        return {"vsize_adjusted": vsize, "vsize": vsize, "vsize_bip141": vsize, "weight": entry.tx.weight,
                "time": entry.time, "height": entry.height, "descendantcount": 1 + len(desc),
                "descendantsize": vsize + sum(n.mempool[t].tx.vsize for t in desc),
                "ancestorcount": 1 + len(anc), "ancestorsize": vsize + sum(n.mempool[t].tx.vsize for t in anc),
                "wtxid": entry.tx.wtxid_hex, "chunkweight": chunk[2],
                "fees": {"base": fee, "modified": fee,
                         "ancestor": Amount(entry.fee + sum(n.mempool[t].fee for t in anc)),
                         "descendant": Amount(entry.fee + sum(n.mempool[t].fee for t in desc)),
                         "chunk": Amount(chunk[0])},
                "depends": [t[::-1].hex() for t in n.mempool_parents(entry.tx)],
                "spentby": [t[::-1].hex() for t in n.mempool_children(txid)], "unbroadcast": entry.unbroadcast}

    def _best_header(self):
        best = self.node.tip
        for bi in self.node.blocks.values():
            if not bi.invalid() and bi.chainwork > best.chainwork:
                best = bi
        return best

    # node information

    def m_getblockchaininfo(self, ctx, p):
        n = self.node
        tip = n.tip
        bits = tip.header.bits
        if n.ibd:
            progress = tip.chain_tx / (tip.chain_tx + max(0, n.now() - tip.header.time) * 0.001)
        else:
            progress = 1.0
        out = {"chain": "regtest", "blocks": tip.height, "headers": self._best_header().height,
               "bestblockhash": tip.hash_hex, "bits": f"{bits:08x}", "target": f"{bits_to_target(bits):064x}",
               "difficulty": bits_difficulty(bits), "time": tip.header.time, "mediantime": tip.median_time_past(),
               "verificationprogress": progress, "initialblockdownload": n.ibd,
               "chainwork": f"{tip.chainwork:064x}", "size_on_disk": n.size_on_disk(), "pruned": n.opts.prune > 0}
        if n.opts.prune > 0:
            ph = n.prune_height()
            out["pruneheight"] = ph + 1 if ph is not None else 0
            out["automatic_pruning"] = n.opts.prune > 1
            if n.opts.prune > 1:
                out["prune_target_size"] = n.opts.prune * 1024 * 1024
        out["warnings"] = [PRERELEASE_WARNING]
        return out

    def m_getnetworkinfo(self, ctx, p):
        networks = [{"name": name, "limited": name not in ("ipv4", "ipv6"), "reachable": name in ("ipv4", "ipv6"),
                     "proxy": "", "proxy_randomize_credentials": False}
                    for name in ("ipv4", "ipv6", "onion", "i2p", "cjdns")]
        buckets = {"backlog": 0, "count_tok": 420, "size_tok": 12000000}
        return {"version": 319900, "subversion": "/Satoshi:31.99.0/", "protocolversion": 70017,
                "localservices": "0000000000000c08", "localservicesnames": ["WITNESS", "NETWORK_LIMITED", "P2P_V2"],
                "localrelay": True, "timeoffset": 0, "tx_send_rate": 14,
                "inv_buckets": {"inbound": dict(buckets), "outbound": dict(buckets)}, "networkactive": True,
                "connections": 0, "connections_in": 0, "connections_out": 0, "networks": networks,
                "relayfee": Amount(MIN_RELAY_FEE_KVB), "incrementalfee": Amount(INCREMENTAL_RELAY_FEE_KVB),
                "localaddresses": [], "warnings": [PRERELEASE_WARNING]}

    def m_getzmqnotifications(self, ctx, p):
        z = self.node.zmq
        if z is None:
            return []
        return [{"type": "pub" + t, "address": z.endpoints[t], "hwm": z.hwm[t]} for t in ZMQ_TOPICS if t in z.endpoints]

    def m_getblockcount(self, ctx, p):
        return self.node.tip.height

    def m_getbestblockhash(self, ctx, p):
        return self.node.tip.hash_hex

    def m_getdifficulty(self, ctx, p):
        return bits_difficulty(self.node.tip.header.bits)

    def m_getblockhash(self, ctx, p):
        height = get_int(p[0])
        if height < 0 or height > self.node.tip.height:
            raise RpcError(-8, "Block height out of range")
        return self.node.chain[height].hash_hex

    def m_getblockheader(self, ctx, p):
        bi = self._block(p[0], "hash")
        if p[1] is False:
            return bi.header.serialize().hex()
        return self._header_json(bi)

    def m_getblock(self, ctx, p):
        bi = self._block(p[0])
        verbosity = self._verbosity(p[1], 1)
        if not bi.have_data:
            raise RpcError(-1, "Block not available (pruned data)")
        if verbosity <= 0:
            return bi.raw.hex()
        out = self._header_json(bi)
        out["strippedsize"] = bi.stripped_size
        out["size"] = bi.size
        out["weight"] = bi.weight
        cb = bi.txs[0]
        coinbase = {"version": cb.version, "locktime": cb.locktime, "sequence": cb.vin[0].sequence,
                    "coinbase": cb.vin[0].script_sig.hex()}
        if cb.vin[0].witness:
            coinbase["witness"] = cb.vin[0].witness[0].hex()
        out["coinbase_tx"] = coinbase
        if verbosity == 1:
            out["tx"] = [t.txid_hex for t in bi.txs]
            return out
        txs = []
        for pos, tx in enumerate(bi.txs):
            coins = bi.undo.get(pos) if (bi.undo is not None and pos > 0) else None
            fee = (sum(c.value for c in coins) - tx.value_out()) if coins is not None else None
            txs.append(self._tx_json(tx, True, coins if verbosity >= 3 else None, fee))
        out["tx"] = txs
        return out

    def m_getchaintips(self, ctx, p):
        n = self.node
        has_child = set()
        for bi in n.blocks.values():
            if bi.prev is not None:
                has_child.add(bi.prev.hash)
        tips = [bi for bi in n.blocks.values() if bi.hash not in has_child]
        if n.tip not in tips:
            tips.append(n.tip)
        tips.sort(key=lambda b: (-b.height, b.seq_id))
        out = []
        for bi in tips:
            fork = bi
            while not n.in_active_chain(fork):
                fork = fork.prev
            if n.in_active_chain(bi):
                status = "active"
            elif bi.invalid():
                status = "invalid"
            else:
                status = "valid-fork"
            out.append({"height": bi.height, "hash": bi.hash_hex, "branchlen": bi.height - fork.height,
                        "status": status})
        return out

    def m_gettxoutproof(self, ctx, p):
        n = self.node
        if not p[0]:
            raise RpcError(-8, "Parameter 'txids' cannot be empty")
        wanted = []
        for v in p[0]:
            txid = parse_hash(v, "txid")
            if txid in wanted:
                raise RpcError(-8, f"Invalid parameter, duplicated txid: {v}")
            wanted.append(txid)
        bi = None
        if p[1] is not None:
            bi = self._block(p[1])
        else:
            for txid in wanted:
                loc = n.tx_index.get(txid)
                if loc is not None:
                    tx = loc[0].txs[loc[1]]
                    if any((txid, k) in n.utxo for k in range(len(tx.vout))):
                        bi = loc[0]
                        break
            if bi is None:
                raise RpcError(-5, "Transaction not yet in block")
        if not bi.have_data:
            raise RpcError(-1, "Block not available (pruned data)")
        txids = [t.txid for t in bi.txs]
        if not all(t in txids for t in wanted):
            raise RpcError(-5, "Not all transactions found in specified or retrieved block")
        return build_merkle_proof(bi.header.serialize(), txids, [t in wanted for t in txids]).hex()

    def m_verifytxoutproof(self, ctx, p):
        data = parse_hex(p[0], "proof")
        try:
            header, ntx, root, matched = parse_merkle_proof(data)
        except DecodeError:
            raise RpcError(-1, "SpanReader::read(): end of data: iostream error") from None
        if root != header[36:68]:
            return []
        bi = self.node.lookup_block(sha256d(header))
        if bi is None or not self.node.in_active_chain(bi):
            raise RpcError(-5, "Block not found in chain")
        if len(bi.txs) != ntx:
            return []
        return [t[::-1].hex() for t in matched]

    def _output_script(self, text, descriptor_ok=False):
        script = address_to_script(text) if isinstance(text, str) else None
        if script is None and descriptor_ok and isinstance(text, str):
            body = text.split("#")[0]
            if body.startswith("addr(") and body.endswith(")"):
                script = address_to_script(body[5:-1])
            elif body.startswith("raw(") and body.endswith(")"):
                try:
                    script = bytes.fromhex(body[4:-1])
                except ValueError:
                    script = None
        return script

    def m_generatetoaddress(self, ctx, p):
        count = get_int(p[0])
        script = self._output_script(p[1])
        if script is None:
            raise RpcError(-5, "Error: Invalid address")
        hashes = []
        for _ in range(max(0, min(count, 100_000))):
            hashes.append(self.node.mine(script).hash_hex)
        return hashes

    def m_generateblock(self, ctx, p):
        n = self.node
        script = self._output_script(p[0], descriptor_ok=True)
        if script is None:
            raise RpcError(-5, "Error: Invalid address or descriptor")
        txs = []
        for item in p[1]:
            if not isinstance(item, str):
                raise RpcError(-3, f"JSON value of type {uv_type(item)} is not of expected type string")
            entry = None
            if len(item) == 64:
                try:
                    entry = n.mempool.get(bytes.fromhex(item)[::-1])
                except ValueError:
                    entry = None
                if entry is None:
                    raise RpcError(-5, f"Transaction {item} not in mempool.")
                txs.append(entry.tx)
                continue
            tx = decode_hex_tx(item)
            if tx is None:
                raise RpcError(-22, f"Transaction decode failed for {item}. Make sure the tx has at least one input.")
            txs.append(tx)
        try:
            header, all_txs = n.create_block(script, txs, claim_fees=False)
        except TxReject as e:
            raise RpcError(-25, f"TestBlockValidity failed: {e.reason}") from None
        out = {"hash": header.hash()[::-1].hex()}
        if p[2] is False:
            out["hex"] = serialize_block(header, all_txs).hex()
        else:
            n.submit_block(header, all_txs)
        return out

    def m_invalidateblock(self, ctx, p):
        bi = self._block(p[0])
        if bi.height == 0:
            raise RpcError(-1, "Cannot invalidate the genesis block")
        self.node.invalidate(bi)
        return None

    def m_reconsiderblock(self, ctx, p):
        self.node.reconsider(self._block(p[0]))
        return None

    def m_pruneblockchain(self, ctx, p):
        n = self.node
        if n.opts.prune <= 0:
            raise RpcError(-1, "Cannot prune blocks because node is not in prune mode.")
        height = get_int(p[0], lo=-(1 << 63), hi=(1 << 63) - 1)
        if height < 0:
            raise RpcError(-8, "Negative block height.")
        if height > 1_000_000_000:
            found = next((b for b in n.chain if b.header.time >= height - 7200), None)
            if found is None:
                raise RpcError(-8, "Could not find block with at least the specified timestamp.")
            height = found.height
        chain_height = n.tip.height
        if chain_height < n.opts.prune_after:
            raise RpcError(-1, "Blockchain is too short for pruning.")
        if height > chain_height:
            raise RpcError(-8, "Blockchain is shorter than the attempted prune height.")
        height = min(height, chain_height - MIN_BLOCKS_TO_KEEP)
        n.prune_files(height)
        ph = n.prune_height()
        return -1 if ph is None else ph

    def m_uptime(self, ctx, p):
        return int(time.time() - self.node.started)

    def m_stop(self, ctx, p):
        ctx.stop_requested = True
        return "Bitcoin Core stopping"

    def m_setmocktime(self, ctx, p):
        t = get_int(p[0], lo=-(1 << 63), hi=(1 << 63) - 1)
        if t < 0:
            raise RpcError(-8, f"Mocktime cannot be negative: {t}.")
        self.node.mocktime = t
        return None

    def m_getmininginfo(self, ctx, p):
        tip = self.node.tip
        bits = tip.header.bits
        out = {"blocks": tip.height}
        if self.node.last_template is not None:
            out["currentblockweight"], out["currentblocktx"] = self.node.last_template
        out.update({"bits": f"{bits:08x}", "difficulty": bits_difficulty(bits),
                "target": f"{bits_to_target(bits):064x}", "networkhashps": 0, "pooledtx": len(self.node.mempool),
                "blockmintxfee": Amount(1), "chain": "regtest",
                "next": {"height": tip.height + 1, "bits": f"{bits:08x}", "difficulty": bits_difficulty(bits),
                         "target": f"{bits_to_target(bits):064x}"},
                "warnings": [PRERELEASE_WARNING]})
        return out

    def m_getconnectioncount(self, ctx, p):
        return 0

    def m_getpeerinfo(self, ctx, p):
        return []

    def m_ping(self, ctx, p):
        return None

    def m_help(self, ctx, p):
        if p[0] is not None:
            if p[0] not in SPECS:
                return f"help: unknown command: {p[0]}"
            return help_text(p[0])
        return "".join(help_text(m) for m in sorted(SPECS) if not m.startswith("double_"))

    def m_validateaddress(self, ctx, p):
        script = address_to_script(p[0])
        if script is None:
            return {"isvalid": False, "error_locations": [],
                    "error": "Invalid or unsupported Segwit (Bech32) or Base58 encoding."}
        kind, sol = solve_script(script)
        out = {"isvalid": True, "address": p[0], "scriptPubKey": script.hex(),
               "isscript": kind in ("scripthash", "witness_v0_scripthash", "witness_v1_taproot"),
               "iswitness": kind.startswith("witness") or kind == "anchor"}
        if out["iswitness"]:
            out["witness_version"] = 0 if script[0] == OP_0 else script[0] - OP_1 + 1
            out["witness_program"] = script[2:].hex()
        return out

    # mempool and transactions

    def m_getmempoolentry(self, ctx, p):
        entry = self.node.mempool.get(parse_hash(p[0], "txid"))
        if entry is None:
            raise RpcError(-5, "Transaction not in mempool")
        return self._entry_json(entry)

    def m_getrawmempool(self, ctx, p):
        n = self.node
        if p[0] and p[1]:
            raise RpcError(-8, "Verbose results cannot contain mempool sequence values.")
        if p[0]:
            return {t[::-1].hex(): self._entry_json(e) for t, e in n.mempool.items()}
        txids = [t[::-1].hex() for t in n.mempool]
        if p[1]:
            return {"txids": txids, "mempool_sequence": n.mempool_seq}
        return txids

    def m_getmempoolinfo(self, ctx, p):
        n = self.node
        return {"loaded": True, "size": len(n.mempool), "bytes": sum(e.tx.vsize for e in n.mempool.values()),
                "usage": sum(e.tx.size * 4 + 600 for e in n.mempool.values()),
                "total_fee": Amount(sum(e.fee for e in n.mempool.values())), "maxmempool": 300000000,
                "mempoolminfee": Amount(MIN_RELAY_FEE_KVB), "minrelaytxfee": Amount(MIN_RELAY_FEE_KVB),
                "incrementalrelayfee": Amount(INCREMENTAL_RELAY_FEE_KVB),
                "unbroadcastcount": sum(1 for e in n.mempool.values() if e.unbroadcast),
                "permitbaremultisig": True, "maxdatacarriersize": 100000, "limitclustercount": 64,
                "limitclustersize": 101000, "optimal": True}

    def m_getrawtransaction(self, ctx, p):
        n = self.node
        txid = parse_hash(p[0], "parameter 1")
        verbosity = self._verbosity(p[1], 0)
        bi = None
        if p[2] is not None:
            bi = n.lookup_block(parse_hash(p[2], "parameter 3"))
            if bi is None:
                raise RpcError(-5, "Block hash not found")
        if txid == n.chain[0].txs[0].txid:
            raise RpcError(-5, "The genesis block coinbase is not considered an ordinary transaction and cannot be "
                               "retrieved")
        tx = pos = None
        if bi is not None:
            if not bi.have_data:
                raise RpcError(-1, "Block not available")
            for k, t in enumerate(bi.txs):
                if t.txid == txid:
                    tx, pos = t, k
            if tx is None:
                raise RpcError(-5, "No such transaction found in the provided block. Use gettransaction for wallet "
                                   "transactions.")
        else:
            entry = n.mempool.get(txid)
            if entry is None:
                raise RpcError(-5, "No such mempool transaction. Use -txindex or provide a block hash to enable "
                                   "blockchain transaction queries. Use gettransaction for wallet transactions.")
            tx = entry.tx
        if verbosity <= 0:
            return tx.serialize(True).hex()
        out = {}
        if bi is not None:
            out["in_active_chain"] = n.in_active_chain(bi)
        else:
            out["vsize_adjusted"] = tx.vsize
        coins = None
        if verbosity >= 2 and bi is not None and pos and bi.undo is not None:
            coins = bi.undo.get(pos)
        fee = sum(c.value for c in coins) - tx.value_out() if coins is not None else None
        out.update(self._tx_json(tx, True, coins, fee))
        if bi is not None:
            out["blockhash"] = bi.hash_hex
            if n.in_active_chain(bi):
                out["confirmations"] = n.tip.height - bi.height + 1
                out["time"] = bi.header.time
                out["blocktime"] = bi.header.time
            else:
                out["confirmations"] = 0
        return out

    def m_decoderawtransaction(self, ctx, p):
        tx = self._decode_tx(p[0], "TX decode failed", witness=p[1])
        return self._tx_json(tx, include_hex=False)

    def _max_fee_rate(self, value, default):
        if value is None:
            return default
        return amount_from_value(value)

    def m_sendrawtransaction(self, ctx, p):
        n = self.node
        tx = self._decode_tx(p[0])
        max_rate = self._max_fee_rate(p[1], DEFAULT_MAX_RAW_TX_FEE_RATE_KVB)
        max_burn = amount_from_value(p[2]) if p[2] is not None else 0
        for out in tx.vout:
            if (out.script[:1] == b"\x6a" or len(out.script) > 10000) and out.value > max_burn:
                raise RpcError(-25, "Unspendable output exceeds maximum configured by user (maxburnamount)")
        txid = tx.txid
        if any((txid, k) in n.utxo for k in range(len(tx.vout))):
            raise RpcError(-27, "Transaction outputs already in utxo set")
        if txid in n.mempool:
            return tx.txid_hex
        try:
            n.accept_to_mempool(tx, max_fee_kvb=max_rate or None)
        except TxReject as e:
            if e.kind == "max_fee":
                raise RpcError(-25, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)") from None
            raise RpcError(-25 if e.kind == "missing_inputs" else -26, e.reason) from None
        return tx.txid_hex

    def m_testmempoolaccept(self, ctx, p):
        n = self.node
        if not 1 <= len(p[0]) <= 25:
            raise RpcError(-8, "Array must contain between 1 and 25 transactions.")
        max_rate = self._max_fee_rate(p[1], DEFAULT_MAX_RAW_TX_FEE_RATE_KVB)
        out = []
        for raw in p[0]:
            tx = self._decode_tx(raw)
            item = {"txid": tx.txid_hex, "wtxid": tx.wtxid_hex}
            try:
                res = n.accept_to_mempool(tx, test_only=True, max_fee_kvb=max_rate or None)
                item.update({"allowed": True, "vsize_adjusted": res["vsize"], "vsize": res["vsize"],
                             "vsize_bip141": res["vsize"],
                             "fees": {"base": Amount(res["fee"]),
                                      "effective-feerate": Amount(res["fee"] * 1000 // res["vsize"]),
                                      "effective-includes": [tx.wtxid_hex]}})
            except TxReject as e:
                item["allowed"] = False
                if e.kind == "missing_inputs":
                    item["reject-reason"] = "missing-inputs"
                elif e.kind == "max_fee":
                    item["reject-reason"] = "max-fee-exceeded"
                else:
                    item["reject-reason"] = e.reject_reason
                    item["reject-details"] = e.reason
            out.append(item)
        return out

    def m_estimatesmartfee(self, ctx, p):
        target = get_int(p[0])
        if target < 1 or target > 1008:
            raise RpcError(-8, "Invalid conf_target, must be between 1 and 1008")
        self._check_estimate_mode(p[1])
        return {"errors": ["Insufficient data or no feerate found"], "blocks": target}

    @staticmethod
    def _check_estimate_mode(mode):
        if mode is not None and mode.lower() not in ("unset", "economical", "conservative"):
            raise RpcError(-8, 'Invalid estimate_mode parameter, must be one of: "unset", "economical", '
                               '"conservative"')

    def m_createrawtransaction(self, ctx, p):
        locktime = 0
        if p[2] is not None:
            locktime = get_int(p[2], lo=-(1 << 63), hi=(1 << 63) - 1)
            if locktime < 0 or locktime > 0xFFFFFFFF:
                raise RpcError(-8, "Invalid parameter, locktime out of range")
        rbf = p[3] is not False
        version = 2
        if p[4] is not None:
            version = get_int(p[4])
            if version < 1 or version > 3:
                raise RpcError(-8, "Invalid parameter, version out of range(1~3)")
        vin = []
        for item in p[0]:
            if not isinstance(item, dict):
                raise RpcError(-3, f"JSON value of type {uv_type(item)} is not of expected type object")
            txid = parse_hash(item.get("txid"), "txid")
            vout = item.get("vout")
            if isinstance(vout, bool) or not isinstance(vout, (int, Decimal)):
                raise RpcError(-8, "Invalid parameter, missing vout key")
            vout = get_int(vout)
            if vout < 0:
                raise RpcError(-8, "Invalid parameter, vout cannot be negative")
            if rbf:
                seq = 0xFFFFFFFD
            else:
                seq = 0xFFFFFFFE if locktime else 0xFFFFFFFF
            if item.get("sequence") is not None:
                seq = get_int(item["sequence"], lo=-(1 << 63), hi=(1 << 63) - 1)
                if seq < 0 or seq > 0xFFFFFFFF:
                    raise RpcError(-8, "Invalid parameter, sequence number is out of range")
            vin.append(TxIn(txid, vout, b"", seq))
        if rbf and any(i.sequence > 0xFFFFFFFD for i in vin):
            raise RpcError(-8, "Invalid parameter combination: Sequence number(s) contradict replaceable option")
        outputs = p[1]
        if isinstance(outputs, dict):
            outputs = [{k: v} for k, v in outputs.items()]
        elif not isinstance(outputs, list):
            raise RpcError(-3, f"JSON value of type {uv_type(outputs)} is not of expected type array")
        vout = []
        seen = set()
        has_data = False
        for item in outputs:
            if not isinstance(item, dict):
                raise RpcError(-8, "Invalid parameter, key-value pair not an object as expected")
            if len(item) != 1:
                raise RpcError(-8, "Invalid parameter, key-value pair must contain exactly one key")
            (key, value), = item.items()
            if key == "data":
                if has_data:
                    raise RpcError(-8, "Invalid parameter, duplicate key: data")
                has_data = True
                vout.append(TxOut(0, bytes([OP_RETURN]) + push_data(parse_hex(value, "Data"))))
                continue
            script = address_to_script(key)
            if script is None:
                raise RpcError(-5, f"Invalid Bitcoin address: {key}")
            if script in seen:
                raise RpcError(-8, f"Invalid parameter, duplicated address: {key}")
            seen.add(script)
            vout.append(TxOut(amount_from_value(value), script))
        return Tx(version, vin, vout, locktime).serialize(True).hex()

    # wallets

    def _wallet_path(self, name):
        return os.path.join(self.app.chain_dir, "wallets", name)

    def m_createwallet(self, ctx, p):
        n = self.node
        name = p[0]
        if p[5] is False:
            raise RpcError(-4, 'descriptors argument must be set to "true"; it is no longer possible to create a '
                               'legacy wallet.')
        if name in n.wallet_store:
            raise RpcError(-4, f"Wallet file verification failed. Failed to create database path "
                               f"'{self._wallet_path(name)}'. Database already exists.")
        wallet = Wallet(n, name, disable_private_keys=bool(p[1]), blank=bool(p[2]), avoid_reuse=bool(p[4]))
        n.wallet_store[name] = wallet
        n.wallets[name] = wallet
        try:
            os.makedirs(self._wallet_path(name), exist_ok=True)
        except OSError:
            pass
        return {"name": name}

    def m_loadwallet(self, ctx, p):
        n = self.node
        name = p[0]
        if name in n.wallets:
            raise RpcError(-35, f'Wallet "{name}" is already loaded.')
        if name not in n.wallet_store:
            raise RpcError(-18, f"Wallet file verification failed. Failed to load database path "
                                f"'{self._wallet_path(name)}'. Path does not exist.")
        n.wallets[name] = n.wallet_store[name]
        return {"name": name}

    def m_unloadwallet(self, ctx, p):
        n = self.node
        from_uri = self._wallet_name_from_uri(ctx)
        name = p[0]
        if name is not None and from_uri is not None and name != from_uri:
            raise RpcError(-8, "RPC endpoint wallet and wallet_name parameter specify different wallets")
        if name is None:
            name = from_uri
        if name is None:
            raise RpcError(-8, "Either the RPC endpoint wallet or the wallet name parameter must be provided")
        if name not in n.wallets:
            raise RpcError(-18, "Requested wallet does not exist or is not loaded")
        del n.wallets[name]
        return {}

    def m_listwallets(self, ctx, p):
        return list(self.node.wallets)

    def m_listwalletdir(self, ctx, p):
        return {"wallets": [{"name": name, "warnings": []} for name in self.node.wallet_store]}

    def _last_processed(self):
        return {"hash": self.node.tip.hash_hex, "height": self.node.tip.height}

    def m_getwalletinfo(self, ctx, p, w):
        flags = []
        if w.avoid_reuse:
            flags.append("avoid_reuse")
        if w.blank:
            flags.append("blank")
        if not w.private_keys_enabled:
            flags.append("disable_private_keys")
        flags += ["last_hardened_xpub_cached", "descriptor_wallet"]
        return {"walletname": w.name, "walletversion": 169900, "format": "sqlite", "txcount": len(w.txs),
                "keypoolsize": w.keypool_size(False), "keypoolsize_hd_internal": w.keypool_size(True),
                "private_keys_enabled": w.private_keys_enabled, "avoid_reuse": w.avoid_reuse, "scanning": False,
                "descriptors": True, "external_signer": False, "blank": w.blank, "birthtime": w.birthtime,
                "flags": flags, "lastprocessedblock": self._last_processed()}

    @staticmethod
    def _address_type(value, default="bech32", what="address"):
        if value is None:
            return default
        if value not in WALLET_KINDS:
            raise RpcError(-5, f"Unknown {what} type '{value}'")
        return value

    def m_getnewaddress(self, ctx, p, w):
        label = p[0] if p[0] is not None else ""
        if label == "*":
            raise RpcError(-11, "Invalid label name")
        kind = self._address_type(p[1])
        if not w.private_keys_enabled or w.blank:
            raise RpcError(-4, "Error: This wallet has no available keys")
        return w.new_address(kind, label)

    def m_getrawchangeaddress(self, ctx, p, w):
        kind = self._address_type(p[0], default="bech32m")
        if not w.private_keys_enabled or w.blank:
            raise RpcError(-4, "Error: This wallet has no available keys")
        return w.derive(kind, True).address

    def m_getbalances(self, ctx, p, w):
        trusted, untrusted, immature, nonmempool = w.balances()
        mine = {"trusted": Amount(trusted), "untrusted_pending": Amount(untrusted), "immature": Amount(immature),
                "nonmempool": Amount(nonmempool)}
        if w.avoid_reuse:
            mine["used"] = Amount(0)
        return {"mine": mine, "lastprocessedblock": self._last_processed()}

    def m_getbalance(self, ctx, p, w):
        if p[0] is not None and p[0] != "*":
            raise RpcError(-32, 'dummy first argument must be excluded or set to "*".')
        minconf = get_int(p[1]) if p[1] is not None else 0
        total = 0
        for txid, wtx in w.txs.items():
            d = w.depth(txid)
            if d < minconf or d < 0 or not w.is_trusted(txid):
                continue
            if wtx.tx.is_coinbase() and (d <= 0 or w.blocks_to_maturity(wtx, d) > 0):
                continue
            total += sum(o.value for k, o in enumerate(wtx.tx.vout) if o.script in w.keys and not w.is_spent((txid, k)))
        return Amount(total)

    def _coin_json(self, w, op, out, depth, safe):
        key = w.keys[out.script]
        entry = {"txid": op[0][::-1].hex(), "vout": op[1], "address": key.address}
        if out.script in w.address_book:
            entry["label"] = w.address_book[out.script]
        if key.kind == "p2sh-segwit":
            entry["redeemScript"] = (b"\x00\x14" + hash160(key.pubkey)).hex()
        entry.update({"scriptPubKey": out.script.hex(), "amount": Amount(out.value), "confirmations": depth})
        if depth == 0 and op[0] in self.node.mempool:
            e = self.node.mempool[op[0]]
            anc = self.node.mempool_ancestors(op[0])
            entry.update({"ancestorcount": 1 + len(anc),
                          "ancestorsize": e.tx.vsize + sum(self.node.mempool[t].tx.vsize for t in anc),
                          "ancestorfees": e.fee + sum(self.node.mempool[t].fee for t in anc)})
        entry.update({"spendable": True, "solvable": True, "desc": key.desc, "parent_descs": [key.parent_desc],
                      "safe": safe})
        return entry

    def m_listunspent(self, ctx, p, w):
        minconf = get_int(p[0]) if p[0] is not None else 1
        maxconf = get_int(p[1]) if p[1] is not None else 9999999
        scripts = None
        if p[2]:
            scripts = set()
            for a in p[2]:
                s = address_to_script(a) if isinstance(a, str) else None
                if s is None:
                    raise RpcError(-5, f"Invalid Bitcoin address: {a}")
                if s in scripts:
                    raise RpcError(-8, f"Invalid parameter, duplicated address: {a}")
                scripts.add(s)
        include_unsafe = p[3] is not False
        out = []
        for op, txout, depth, safe in w.available_coins(include_unsafe=include_unsafe, min_conf=minconf,
                                                        max_conf=maxconf):
            if scripts is not None and txout.script not in scripts:
                continue
            out.append(self._coin_json(w, op, txout, depth, safe))
        return out

    def _wallet_fee_rate(self, fee_rate=None, conf_target=None, estimate_mode=None, fee_rate_btc=None):
        if fee_rate is not None and conf_target is not None:
            raise RpcError(-8, "Cannot specify both conf_target and fee_rate. Please provide either a confirmation "
                               "target in blocks for automatic fee estimation, or an explicit fee rate.")
        if fee_rate is not None and estimate_mode is not None and str(estimate_mode).lower() != "unset":
            raise RpcError(-8, "Cannot specify both estimate_mode and fee_rate")
        if conf_target is not None:
            target = get_int(conf_target)
            if target < 1 or target > 1008:
                raise RpcError(-8, "Invalid conf_target, must be between 1 and 1008")
        self._check_estimate_mode(estimate_mode)
        if fee_rate is not None:
            rate = amount_from_value(fee_rate, 3)
        elif fee_rate_btc is not None:
            rate = amount_from_value(fee_rate_btc)
        else:
            rate = self.node.opts.fallbackfee_kvb
            if rate == 0:
                raise RpcError(-4, "Fee estimation failed. Fallbackfee is disabled. Wait a few blocks or enable "
                                   "-fallbackfee.")
            return max(rate, MIN_RELAY_FEE_KVB)
        return rate

    def _commit(self, w, tx):
        """CommitTransaction: into the wallet, then to the mempool (a rejection is only logged)."""
        w.on_transaction(tx, None)
        try:
            self.node.accept_to_mempool(tx)
            return None
        except TxReject as e:
            self.app.log(f"CommitTransaction(): Transaction cannot be broadcast immediately, {e.reason}")
            return e.reason

    def _send(self, w, outputs, subtract, replaceable, rate, explicit, verbose):
        n = self.node
        template = Tx(2, [], outputs, n.tip.height)
        try:
            funded, fee, _ = w.fund(template, rate, subtract_from=subtract, replaceable=replaceable, change_pos=None)
        except RpcError as e:
            raise RpcError(-6, e.message) from None
        if fee > DEFAULT_MAX_TX_FEE:
            raise RpcError(-6, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
        signed, complete, _ = w.sign(funded)
        if not complete:
            raise RpcError(-6, "Signing transaction failed")
        self._commit(w, signed)
        if verbose:
            return {"txid": signed.txid_hex, "fee_reason": "None" if explicit else "Fallback fee"}
        return signed.txid_hex

    def m_sendtoaddress(self, ctx, p, w):
        script = address_to_script(p[0])
        if script is None:
            raise RpcError(-5, f"Invalid Bitcoin address: {p[0]}")
        amount = amount_from_value(p[1])
        rate = self._wallet_fee_rate(p[9], p[6], p[7])
        replaceable = self.node.opts.walletrbf if p[5] is None else bool(p[5])
        return self._send(w, [TxOut(amount, script)], [0] if p[4] else [], replaceable, rate, p[9] is not None,
                          bool(p[10]))

    def m_sendmany(self, ctx, p, w):
        if p[0] not in (None, ""):
            raise RpcError(-8, 'Dummy value must be set to ""')
        if not p[1]:
            raise RpcError(-8, "Transaction must have at least one recipient")
        outputs, subtract = [], []
        for address, value in p[1].items():
            script = address_to_script(address)
            if script is None:
                raise RpcError(-5, f"Invalid Bitcoin address: {address}")
            if p[4] and address in p[4]:
                subtract.append(len(outputs))
            outputs.append(TxOut(amount_from_value(value), script))
        rate = self._wallet_fee_rate(p[8], p[6], p[7])
        replaceable = self.node.opts.walletrbf if p[5] is None else bool(p[5])
        return self._send(w, outputs, subtract, replaceable, rate, p[8] is not None, bool(p[9]))

    def m_gettransaction(self, ctx, p, w):
        n = self.node
        txid = parse_hash(p[0], "txid")
        wtx = w.txs.get(txid)
        if wtx is None:
            raise RpcError(-5, "Invalid or non-wallet transaction id")
        tx = wtx.tx
        depth = w.depth(txid)
        debit = w.debit(tx)
        credit = sum(o.value for o in tx.vout if o.script in w.keys)
        if tx.is_coinbase() and (depth < 1 or w.blocks_to_maturity(wtx, depth) > 0):
            credit = 0
        from_me = debit > 0
        fee = tx.value_out() - debit if from_me else 0
        out = {"amount": Amount(credit - debit - fee)}
        if from_me:
            out["fee"] = Amount(fee)
        out["confirmations"] = depth
        if tx.is_coinbase():
            out["generated"] = True
        loc = n.tx_index.get(txid)
        if loc is not None:
            out.update({"blockhash": loc[0].hash_hex, "blockheight": loc[0].height, "blockindex": loc[1],
                        "blocktime": loc[0].header.time})
        else:
            out["trusted"] = w.is_trusted(txid)
        out["txid"] = tx.txid_hex
        out["wtxid"] = tx.wtxid_hex
        out["alternate_wtxids"] = []
        conflicts = set()
        for inp in tx.vin:
            for other in w.spends.get(inp.outpoint, ()):
                if other != txid:
                    conflicts.add(other)
        out["walletconflicts"] = [t[::-1].hex() for t in sorted(conflicts, key=lambda t: w.txs[t].order)]
        out["mempoolconflicts"] = [t[::-1].hex() for t in w.mempool_conflicts(txid)]
        out["time"] = wtx.time
        out["timereceived"] = wtx.time_received
        if wtx.replaced_by:
            out["replaced_by_txid"] = wtx.replaced_by
        if wtx.replaces:
            out["replaces_txid"] = wtx.replaces
        details = []
        if from_me:
            for k, o in enumerate(tx.vout):
                if w.is_change(o.script):
                    continue
                entry = {}
                address = script_address(o.script)
                if address:
                    entry["address"] = address
                entry["category"] = "send"
                entry["amount"] = Amount(-o.value)
                if o.script in w.address_book:
                    entry["label"] = w.address_book[o.script]
                entry["vout"] = k
                entry["fee"] = Amount(-(debit - tx.value_out()))
                entry["abandoned"] = wtx.abandoned
                details.append(entry)
        for k, o in enumerate(tx.vout):
            if o.script not in w.keys or (from_me and w.is_change(o.script)):
                continue
            key = w.keys[o.script]
            entry = {"address": key.address, "parent_descs": [key.parent_desc]}
            if tx.is_coinbase():
                if depth < 1:
                    entry["category"] = "orphan"
                elif w.blocks_to_maturity(wtx, depth) > 0:
                    entry["category"] = "immature"
                else:
                    entry["category"] = "generate"
            else:
                entry["category"] = "receive"
            entry["amount"] = Amount(o.value)
            if o.script in w.address_book:
                entry["label"] = w.address_book[o.script]
            entry["vout"] = k
            entry["abandoned"] = wtx.abandoned
            details.append(entry)
        out["details"] = details
        out["hex"] = tx.serialize(True).hex()
        if p[2]:
            out["decoded"] = self._tx_json(tx, include_hex=False)
        out["lastprocessedblock"] = self._last_processed()
        return out

    FUND_OPTIONS = {"add_inputs", "include_unsafe", "minconf", "maxconf", "changeAddress", "change_address",
                    "changePosition", "change_position", "change_type", "includeWatching", "include_watching",
                    "lockUnspents", "lock_unspents", "fee_rate", "feeRate", "subtractFeeFromOutputs",
                    "subtract_fee_from_outputs", "replaceable", "conf_target", "estimate_mode", "input_weights",
                    "solving_data", "max_tx_weight"}

    def m_fundrawtransaction(self, ctx, p, w):
        n = self.node
        tx = self._decode_tx(p[0], "TX decode failed", witness=p[2])
        options = p[1]
        if options is None or isinstance(options, bool):
            options = {}
        if not isinstance(options, dict):
            raise RpcError(-3, f"JSON value of type {uv_type(options)} is not of expected type object")
        for key in options:
            if key not in self.FUND_OPTIONS:
                raise RpcError(-3, f"Unexpected key {key}")
        if "fee_rate" in options and "feeRate" in options:
            raise RpcError(-8, "Cannot specify both fee_rate (sat/vB) and feeRate (BTC/kvB)")
        if "feeRate" in options and "conf_target" in options:
            raise RpcError(-8, "Cannot specify both conf_target and feeRate. Please provide either a confirmation "
                               "target in blocks for automatic fee estimation, or an explicit fee rate.")
        if not tx.vout:
            raise RpcError(-8, "TX must have at least one output")
        rate = self._wallet_fee_rate(options.get("fee_rate"), options.get("conf_target"),
                                     options.get("estimate_mode"), options.get("feeRate"))
        change_type = options.get("change_type")
        if change_type is not None and change_type not in WALLET_KINDS:
            raise RpcError(-5, f"Unknown change type '{change_type}'")
        change_pos = options.get("changePosition", options.get("change_position"))
        if change_pos is not None:
            change_pos = get_int(change_pos)
            if change_pos < -1 or change_pos > len(tx.vout):
                raise RpcError(-8, "changePosition out of bounds")
        sffo = options.get("subtractFeeFromOutputs", options.get("subtract_fee_from_outputs")) or []
        indexes = []
        for v in sffo:
            k = get_int(v)
            if k in indexes:
                raise RpcError(-8, f"Invalid parameter, duplicated position: {k}")
            if k < 0 or k >= len(tx.vout):
                raise RpcError(-8, f"Invalid parameter, value out of range: {k}")
            indexes.append(k)
        replaceable = options.get("replaceable", n.opts.walletrbf)
        funded, fee, pos = w.fund(tx, rate, add_inputs=options.get("add_inputs", True) is not False,
                                  change_type=change_type, change_pos=change_pos, subtract_from=indexes,
                                  lock=bool(options.get("lockUnspents", options.get("lock_unspents", False))),
                                  include_unsafe=bool(options.get("include_unsafe", False)),
                                  replaceable=bool(replaceable))
        if fee > DEFAULT_MAX_TX_FEE:
            raise RpcError(-4, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
        return {"hex": funded.serialize(True).hex(), "fee": Amount(fee), "changepos": pos}

    SIGHASH_TYPES = {"DEFAULT", "ALL", "NONE", "SINGLE", "ALL|ANYONECANPAY", "NONE|ANYONECANPAY",
                     "SINGLE|ANYONECANPAY"}

    def m_signrawtransactionwithwallet(self, ctx, p, w):
        tx = self._decode_tx(p[0])
        if p[2] is not None and p[2] not in self.SIGHASH_TYPES:
            raise RpcError(-8, f"'{p[2]}' is not a valid sighash parameter.")
        signed, complete, errors = w.sign(tx)
        out = {"hex": signed.serialize(True).hex(), "complete": complete}
        if errors:
            out["errors"] = errors
        return out

    BUMP_OPTIONS = {"conf_target", "fee_rate", "replaceable", "estimate_mode", "outputs", "original_change_index"}

    def m_bumpfee(self, ctx, p, w):
        n = self.node
        txid = parse_hash(p[0], "txid")
        options = p[1] or {}
        for key in options:
            if key not in self.BUMP_OPTIONS:
                raise RpcError(-3, f"Unexpected key {key}")
        wtx = w.txs.get(txid)
        if wtx is None:
            raise RpcError(-5, "Invalid or non-wallet transaction id")
        tx = wtx.tx
        for inp in tx.vin:   # findCoins: the chain's UTXO set seen through the mempool
            if n.spendable_coin(inp.outpoint) is None:
                raise RpcError(-1, f"{inp.prev_txid[::-1].hex()}:{inp.prev_n} is already spent")
        for k in range(len(tx.vout)):
            for spender in w.spends.get((txid, k), ()):
                if w.depth(spender) >= 0 and not w.txs[spender].abandoned:
                    raise RpcError(-8, "Transaction has descendants in the wallet")
        if n.mempool_children(txid):
            raise RpcError(-8, "Transaction has descendants in the mempool")
        if w.depth(txid) != 0:
            raise RpcError(-4, "Transaction has been mined, or is conflicted with a mined transaction")
        if wtx.replaced_by:
            raise RpcError(-4, f"Cannot bump transaction {tx.txid_hex} which was already bumped by transaction "
                               f"{wtx.replaced_by}")
        if not w.all_inputs_mine(tx):
            raise RpcError(-4, "Transaction contains inputs that don't belong to this wallet")
        old_fee = w.debit(tx) - tx.value_out()
        old_vsize = tx.vsize
        explicit = options.get("fee_rate")
        if explicit is not None:
            rate = self._wallet_fee_rate(explicit, options.get("conf_target"), options.get("estimate_mode"))
        else:
            if options.get("conf_target") is not None:
                self._wallet_fee_rate(None, options.get("conf_target"), options.get("estimate_mode"))
            old_rate = old_fee * 1000 // old_vsize + 1
            rate = old_rate + max(INCREMENTAL_RELAY_FEE_KVB, WALLET_INCREMENTAL_RELAY_FEE_KVB)
            if n.opts.fallbackfee_kvb:
                rate = max(rate, n.opts.fallbackfee_kvb)
        outputs = [o for o in tx.vout if not w.is_change(o.script)]
        change_outs = [o for o in tx.vout if w.is_change(o.script)]
        change_type = None
        if change_outs:
            change_type = w.input_kind(change_outs[0].script)
        template = Tx(tx.version, [TxIn(i.prev_txid, i.prev_n, b"", i.sequence) for i in tx.vin],
                      [TxOut(o.value, o.script) for o in outputs], n.tip.height)
        replaceable = options.get("replaceable", True)
        for i in template.vin:
            i.sequence = 0xFFFFFFFD if replaceable else 0xFFFFFFFE
        # The original's inputs are spent by the original itself: let the wallet see them as free.
        saved = {}
        for i in tx.vin:
            saved[i.outpoint] = w.spends.get(i.outpoint)
            w.spends[i.outpoint] = set()
        try:
            funded, fee, _ = w.fund(template, rate, change_type=change_type, replaceable=bool(replaceable))
        except RpcError as e:
            raise RpcError(-4, e.message) from None
        finally:
            for op, value in saved.items():
                if value is None:
                    w.spends.pop(op, None)
                else:
                    w.spends[op] = value
        est_vsize = w.estimate_vsize([w._input_size(i, n.find_txout(i.outpoint)) for i in funded.vin], funded.vout)
        old_part = fee_for(old_fee * 1000 // old_vsize, est_vsize)
        incremental = fee_for(INCREMENTAL_RELAY_FEE_KVB, est_vsize)
        if explicit is not None and fee < old_part + incremental:
            raise RpcError(-8, f"Insufficient total fee {format_money(fee)}, must be at least "
                               f"{format_money(old_part + incremental)} (oldFee {format_money(old_part)} + "
                               f"incrementalFee {format_money(incremental)})")
        if fee > DEFAULT_MAX_TX_FEE:
            raise RpcError(-4, f"Specified or calculated fee {format_money(fee)} is too high (cannot be higher than "
                               f"-maxtxfee {format_money(DEFAULT_MAX_TX_FEE)})")
        signed, complete, _ = w.sign(funded)
        if not complete:
            raise RpcError(-4, "Can't sign transaction.")
        w.on_transaction(signed, None)
        try:
            n.accept_to_mempool(signed)
        except TxReject as e:
            w.txs.pop(signed.txid, None)
            for i in signed.vin:
                w.spends.get(i.outpoint, set()).discard(signed.txid)
            raise RpcError(-4, f"Transaction rejected: {e.reason}") from None
        w.mark_replaced(txid, signed.txid)
        return {"txid": signed.txid_hex, "origfee": Amount(old_fee), "fee": Amount(fee), "errors": []}

    def m_abandontransaction(self, ctx, p, w):
        txid = parse_hash(p[0], "txid")
        wtx = w.txs.get(txid)
        if wtx is None:
            raise RpcError(-5, "Invalid or non-wallet transaction id")
        if w.depth(txid) != 0 or txid in self.node.mempool or wtx.abandoned:
            raise RpcError(-5, "Transaction not eligible for abandonment")
        wtx.abandoned = True
        return None

    def m_getaddressinfo(self, ctx, p, w):
        script = address_to_script(p[0])
        if script is None:
            raise RpcError(-5, "Invalid address")
        kind, _ = solve_script(script)
        key = w.keys.get(script)
        out = {"address": p[0], "scriptPubKey": script.hex(), "ismine": key is not None,
               "solvable": key is not None}
        if key is not None:
            out["desc"] = key.desc
            out["parent_desc"] = key.parent_desc
        out.update({"iswatchonly": False,
                    "isscript": kind in ("scripthash", "witness_v0_scripthash", "witness_v1_taproot"),
                    "iswitness": kind.startswith("witness") or kind == "anchor"})
        if out["iswitness"]:
            out["witness_version"] = 0 if script[0] == OP_0 else script[0] - OP_1 + 1
            out["witness_program"] = script[2:].hex()
        if key is not None:
            if key.kind != "bech32m":
                out["pubkey"] = key.pubkey.hex()
            out["ischange"] = w.is_change(script)
            out["timestamp"] = w.birthtime
            purpose = WALLET_KINDS[key.kind][1]
            out["hdkeypath"] = f"m/{purpose}h/1h/0h/{int(key.internal)}/{key.index}"
            out["hdseedid"] = "0" * 40
            out["hdmasterfingerprint"] = w.fingerprint
        out["labels"] = [w.address_book[script]] if script in w.address_book else []
        return out

    # test hooks

    def m_double_zmqdrop(self, ctx, p):
        count = max(0, min(get_int(p[0]), 1_000_000))
        if self.node.zmq:
            self.node.zmq.drop = count
        self.app.log(f"double_zmqdrop {count}")
        return {"drop": count}

    def m_double_zmqpause(self, ctx, p):
        if self.node.zmq:
            self.node.zmq.pause(bool(p[0]))
        self.app.log(f"double_zmqpause {bool(p[0])}")
        return {"paused": bool(p[0])}

    def m_double_fail(self, ctx, p):
        count = max(0, min(get_int(p[3]) if p[3] is not None else 1, 1_000_000))
        if count:
            self.hooks.fail[p[0]] = [get_int(p[1]), p[2], count]
        else:
            self.hooks.fail.pop(p[0], None)
        self.app.log(f"double_fail {p[0]} {p[1]} {p[2]!r} x{count}")
        return {"method": p[0], "count": count}

    def m_double_http500(self, ctx, p):
        self.hooks.http500 = max(0, min(get_int(p[0]), 1_000_000))
        self.app.log(f"double_http500 {self.hooks.http500}")
        return {"count": self.hooks.http500}

    def m_double_stall(self, ctx, p):
        ms = max(0, min(get_int(p[0]), 600_000))
        count = max(0, min(get_int(p[1]) if p[1] is not None else 1, 1_000_000))
        self.hooks.stall = [ms, count, p[2]] if count and ms else []
        self.app.log(f"double_stall {ms} ms x{count} {p[2] or '*'}")
        return {"ms": ms, "count": count}

    def m_double_info(self, ctx, p):
        z = self.node.zmq
        return {"zmq": {"seq": dict(z.seq), "sent": z.sent, "dropped": z.dropped, "drop_pending": z.drop,
                        "paused": z.paused, "endpoints": dict(z.bound)} if z else None,
                "mempool_sequence": self.node.mempool_seq,
                "fail": {m: {"code": r[0], "message": r[1], "remaining": r[2]} for m, r in self.hooks.fail.items()},
                "http500": self.hooks.http500,
                "stall": {"ms": self.hooks.stall[0], "remaining": self.hooks.stall[1], "method": self.hooks.stall[2]}
                if self.hooks.stall else None}

    def m_double_clear(self, ctx, p):
        self.hooks.fail.clear()
        self.hooks.http500 = 0
        self.hooks.stall = []
        if self.node.zmq:
            self.node.zmq.drop = 0
            self.node.zmq.pause(False)
        return None


# --- HTTP server ------------------------------------------------------------------------------

_MISSING = object()


class JsonRequest:
    """JSONRPCRequest: the id defaults to JSON null; the version to legacy 1.0."""

    def __init__(self):
        self.id = None
        self.v2 = False
        self.method = None
        self.params = None

    def parse(self, value):
        if not isinstance(value, dict):
            raise RpcError(-32600, "Invalid Request object")
        self.id = value["id"] if "id" in value else _MISSING
        self.v2 = False
        version = value.get("jsonrpc")
        if version is not None:
            if not isinstance(version, str):
                raise RpcError(-32600, "jsonrpc field must be a string")
            if version == "2.0":
                self.v2 = True
            elif version != "1.0":
                raise RpcError(-32600, "JSON-RPC version not supported")
        method = value.get("method")
        if method is None:
            raise RpcError(-32600, "Missing method")
        if not isinstance(method, str):
            raise RpcError(-32600, "Method must be a string")
        self.method = method
        params = value.get("params")
        if params is not None and not isinstance(params, (list, dict)):
            raise RpcError(-32600, "Params must be an array or object")
        self.params = params

    def is_notification(self):
        return self.id is _MISSING and self.v2


def reply_object(result, error, req):
    out = {}
    if req.v2:
        out["jsonrpc"] = "2.0"
    if error is None:
        out["result"] = result
        if not req.v2:
            out["error"] = None
    else:
        if not req.v2:
            out["result"] = None
        out["error"] = error
    if req.id is not _MISSING:
        out["id"] = req.id
    return out


def _reject_constant(name):
    raise ValueError(name)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30               # -rpcservertimeout
    server_version = "bitcoind-double"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        try:   # one segment per answer, no Nagle delay (as libevent answers)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def reply(self, status, body=b"", content_type="application/json", headers=()):
        """Status line, headers and body in one write."""
        phrase = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {phrase}", f"Date: {self.date_time_string()}"]
        if status != 204:
            if body:
                lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _handle(self, verb):
        self.server.app.handle_http(self, verb)

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")

    def do_PUT(self):
        self._handle("PUT")

    def do_HEAD(self):
        self._handle("HEAD")


class HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, app):
        self.app = app
        self.slots = threading.BoundedSemaphore(MAX_HTTP_CONNECTIONS)
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 26\r\nConnection: close\r\n\r\n"
                                b"Work queue depth exceeded")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class App:
    def __init__(self, args):
        self.args = args
        datadir = args.get("datadir")
        if not datadir:
            raise SystemExit("Error: the double needs -datadir=DIR")
        if not os.path.isdir(datadir):
            raise SystemExit(f'Error: Specified data directory "{datadir}" does not exist.')
        if not (args.get("regtest", "0") not in ("0", "") or args.get("chain") == "regtest"):
            raise SystemExit("Error: the bitcoind double only emulates -regtest")
        self.datadir = datadir
        self.chain_dir = os.path.join(datadir, "regtest")
        os.makedirs(self.chain_dir, exist_ok=True)
        self.log_path = os.path.join(self.chain_dir, "debug.log")
        self.log_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.cookie_path = None
        self.info_path = os.path.join(self.chain_dir, "double.json")
        self.server = None
        self.node = None
        self.rpc = None

    def log(self, message):
        line = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + " " + message + "\n"
        with self.log_lock:
            try:
                if os.path.exists(self.log_path) and os.path.getsize(self.log_path) > 20 * 1024 * 1024:
                    os.replace(self.log_path, self.log_path + ".old")
                with open(self.log_path, "a") as f:
                    f.write(line)
            except OSError:
                pass

    def _zmq_endpoints(self):
        endpoints, hwm = {}, {}
        for topic in ZMQ_TOPICS:
            address = self.args.get("zmqpub" + topic)
            if address:
                endpoints[topic] = address
                if ("zmqpub" + topic + "hwm") in self.args:
                    hwm[topic] = int(self.args["zmqpub" + topic + "hwm"])
        return endpoints, hwm

    def _write_atomic(self, path, text, mode=0o600):
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def start(self):
        args = self.args
        self.log(f"Bitcoin Core double starting: {' '.join(sys.argv[1:])}")
        opts = Options(args)
        endpoints, hwm = self._zmq_endpoints()
        zmq_pub = None
        if endpoints:
            try:
                zmq_pub = ZmqPublisher(endpoints, log=self.log)
            except RuntimeError as e:
                self.log(str(e))
                raise SystemExit(f"Error: {e}") from None
            for topic, value in hwm.items():
                zmq_pub.hwm[topic] = value
        self.node = Node(opts, zmq_pub, self.log)
        if "mocktime" in args:
            self.node.mocktime = int(args["mocktime"])
        self.rpc = Rpc(self.node, self)
        bind = args.get("rpcbind", "127.0.0.1")
        host, port = bind, int(args.get("rpcport", "18443"))
        if bind.startswith("[") and "]:" in bind:
            host, port = bind[1:bind.index("]")], int(bind.rsplit(":", 1)[1])
        elif bind.count(":") == 1:
            host, port = bind.split(":")[0], int(bind.split(":")[1])
        try:
            self.server = HttpServer((host, port), self)
        except OSError as e:
            self.log(f"Binding RPC on address {host} port {port} failed: {e}")
            if zmq_pub:
                zmq_pub.close()
            raise SystemExit("Error: Unable to bind any endpoint for RPC server") from None
        user, password = args.get("rpcuser", ""), args.get("rpcpassword", "")
        if password:
            self.credentials = f"{user}:{password}"
        else:
            cookie = "__cookie__:" + secrets.token_hex(32)
            self.cookie_path = args.get("rpccookiefile") or os.path.join(self.chain_dir, ".cookie")
            if not os.path.isabs(self.cookie_path):
                self.cookie_path = os.path.join(self.chain_dir, self.cookie_path)
            self._write_atomic(self.cookie_path, cookie)
            self.credentials = cookie
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        rpc_port = self.server.server_address[1]
        zmq_info = dict(zmq_pub.bound) if zmq_pub else {}
        topics = {t: zmq_info[a] for t, a in endpoints.items()} if zmq_pub else {}
        self._write_atomic(self.info_path, json.dumps({
            "rpcport": rpc_port, "zmq": next(iter(topics.values()), None), "zmq_endpoints": topics,
            "pid": os.getpid(), "cookie": self.cookie_path}), 0o644)
        self.log(f"Binding RPC on address {host} port {rpc_port}; ZMQ {topics}; ready")

    def run(self):
        self.start()
        try:
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.shutdown()

    def shutdown(self):
        self.log("Shutdown: in progress...")
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.node and self.node.zmq:
            with self.node.lock:
                self.node.zmq.close()
        for path in (self.cookie_path, self.info_path):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        self.log("Shutdown: done")

    # HTTP

    def _authorized(self, header):
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip()).decode("utf-8", "replace")
        except (ValueError, TypeError):
            return False
        return secrets.compare_digest(decoded.encode(), self.credentials.encode())

    def handle_http(self, h, verb):
        path = h.path
        if path != "/" and not path.startswith("/wallet/"):
            h.reply(404)
            return
        length_text = h.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            h.close_connection = True
            h.reply(400)
            return
        if length < 0 or length > MAX_BODY_BYTES:
            h.close_connection = True
            h.reply(413)
            return
        body = h.rfile.read(length) if length else b""
        if verb != "POST":
            h.reply(405, b"JSONRPC server handles only POST requests", "text/html; charset=ISO-8859-1")
            return
        auth = h.headers.get("Authorization")
        if auth is None:
            h.reply(401, headers=[("WWW-Authenticate", 'Basic realm="jsonrpc"')])
            return
        if not self._authorized(auth):
            self.log("ThreadRPCServer incorrect password attempt")
            time.sleep(0.25)
            h.reply(401, headers=[("WWW-Authenticate", 'Basic realm="jsonrpc"')])
            return
        methods = self._peek_methods(body)
        if not (methods and all(isinstance(m, str) and m.startswith("double_") for m in methods)):
            stall_ms = 0
            with self.node.lock:
                hooks = self.rpc.hooks
                if hooks.http500 > 0:
                    hooks.http500 -= 1
                    fail = True
                else:
                    fail = False
                if not fail and hooks.stall and (hooks.stall[2] is None or hooks.stall[2] in methods):
                    stall_ms = hooks.stall[0]
                    hooks.stall[1] -= 1
                    if hooks.stall[1] <= 0:
                        hooks.stall = []
            if fail:
                h.reply(500)
                return
            if stall_ms:
                time.sleep(stall_ms / 1000.0)
        ctx = RequestContext(path)
        status, payload = self.process(body, ctx)
        h.reply(status, payload)
        if ctx.stop_requested:
            self.log("Shutdown requested by the stop RPC")
            self.stop_event.set()

    @staticmethod
    def _peek_methods(body):
        try:
            value = json.loads(body)
        except ValueError:
            return []
        items = value if isinstance(value, list) else [value]
        return [i.get("method") for i in items if isinstance(i, dict)]

    def process(self, body, ctx):
        """(HTTP status, body bytes) for one HTTP request body, as httprpc.cpp answers."""
        req = JsonRequest()
        try:
            try:
                value = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError):
                raise RpcError(-32700, "Parse error") from None
            if isinstance(value, dict):
                req.parse(value)
                if req.v2:
                    reply = self._exec_one(req, ctx, catch=True)
                    if req.is_notification():
                        return 204, b""
                else:
                    reply = self._exec_one(req, ctx, catch=False)
                return 200, (jdump(reply) + "\n").encode()
            if isinstance(value, list):
                replies = []
                for item in value[:10_000]:
                    try:
                        req.parse(item)
                        response = self._exec_one(req, ctx, catch=True)
                    except RpcError as e:
                        response = reply_object(None, {"code": e.code, "message": e.message}, req)
                    if not req.is_notification():
                        replies.append(response)
                if not replies and value:
                    return 204, b""
                return 200, (jdump(replies) + "\n").encode()
            raise RpcError(-32700, "Top-level object parse error")
        except RpcError as e:
            status = 400 if e.code == -32600 else 404 if e.code == -32601 else 500
            return status, (jdump(reply_object(None, {"code": e.code, "message": e.message}, req)) + "\n").encode()

    def _exec_one(self, req, ctx, catch):
        try:
            result = self.rpc.execute(req.method, req.params, ctx)
        except RpcError as e:
            if not catch:
                raise
            return reply_object(None, {"code": e.code, "message": e.message}, req)
        except Exception as e:  # a bug in the double: answer as bitcoind answers a std::exception
            self.log("internal error: " + traceback.format_exc())
            error = RpcError(-1, f"{type(e).__name__}: {e}")
            if not catch:
                raise error from None
            return reply_object(None, {"code": error.code, "message": error.message}, req)
        return reply_object(result, None, req)


def parse_args(argv):
    args = {}
    for item in argv:
        if not item.startswith("-"):
            raise SystemExit(f"Error: Command line contains unexpected token '{item}', see bitcoind -h for a list "
                             "of options.")
        key, eq, value = item.lstrip("-").partition("=")
        if not eq:
            value = "1"
        if key.startswith("no") and key[2:] in ("listen", "prune", "fastprune", "printtoconsole", "walletrbf",
                                                 "dnsseed", "server", "txindex", "discover"):
            key, value = key[2:], "0" if value not in ("0",) else "1"
        args[key] = value
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = App(args)

    def on_signal(signum, frame):
        app.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        app.run()
    except SystemExit:
        raise
    except Exception:
        app.log("fatal: " + traceback.format_exc())
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

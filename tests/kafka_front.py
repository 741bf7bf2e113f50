"""A TLS and SASL front door for the embedded broker, so the clients' security settings meet a real handshake.

Tansu 0.6 (the embedded broker) can do neither: `--cert` and `--key` are mutually exclusive
on its command line (and its TLS acceptor is never used), its only storage engine keeps no
SCRAM credentials (every SCRAM login ends in `unknown-user`), and its SASL library is built
without PLAIN. This front terminates TLS (Python's ssl), runs the server side of SASL PLAIN
and SCRAM-SHA-256/512 (RFC 5802, as Kafka frames them: SaslHandshake v0-1, SaslAuthenticate
v0-2), passes ApiVersions through, and after a successful login forwards the connection byte
for byte to Tansu, which advertises the front's address so every connection comes this way.
A refused login gets SASL_AUTHENTICATION_FAILED (58) and the connection is closed, like Kafka.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import ssl
import struct
import threading

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


# --------------------------------------------------------------------------- wire helpers


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip_tagged_fields(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


def parse_request(frame: bytes) -> tuple[int, int, int, bytes]:
    """(api_key, api_version, correlation_id, body) of a request frame (without its size prefix)."""
    api_key, api_version, correlation_id, client_id_len = struct.unpack_from(">hhih", frame)
    pos = 10 + max(client_id_len, 0)
    flexible = api_key == SASL_AUTHENTICATE and api_version >= 2
    if flexible:
        pos = _skip_tagged_fields(frame, pos)
    return api_key, api_version, correlation_id, frame[pos:]


def handshake_mechanism(body: bytes) -> str:
    (length,) = struct.unpack_from(">h", body)
    return body[2:2 + length].decode()


def handshake_response(correlation_id: int, error: int, mechanisms) -> bytes:
    out = struct.pack(">ihi", correlation_id, error, len(mechanisms))
    for name in mechanisms:
        out += struct.pack(">h", len(name)) + name.encode()
    return out


def authenticate_bytes(api_version: int, body: bytes) -> bytes:
    if api_version >= 2:
        length, pos = _uvarint(body, 0)
        return body[pos:pos + length - 1]
    (length,) = struct.unpack_from(">i", body)
    return body[4:4 + length]


def authenticate_response(correlation_id: int, api_version: int, error: int, message: str | None,
                          auth_bytes: bytes) -> bytes:
    if api_version >= 2:  # flexible: response header v1, compact strings, tagged fields
        text = message.encode() if message is not None else None
        out = struct.pack(">i", correlation_id) + b"\x00" + struct.pack(">h", error)
        out += _put_uvarint(0) if text is None else _put_uvarint(len(text) + 1) + text
        out += _put_uvarint(len(auth_bytes) + 1) + auth_bytes + struct.pack(">q", 0) + b"\x00"
        return out
    out = struct.pack(">ih", correlation_id, error)
    out += struct.pack(">h", -1) if message is None else struct.pack(">h", len(message)) + message.encode()
    out += struct.pack(">i", len(auth_bytes)) + auth_bytes
    if api_version >= 1:
        out += struct.pack(">q", 0)
    return out


# --------------------------------------------------------------------------- SASL server side


class PlainLogin:
    def __init__(self, users: dict[str, str]):
        self.users = users
        self.user = None

    def step(self, message: bytes) -> tuple[bool | None, bytes]:
        """(True: logged in / False: refused / None: go on, bytes for the client)."""
        _authzid, self.user, password = message.decode().split("\0")
        ok = self.user in self.users and hmac.compare_digest(self.users[self.user], password)
        return ok, b""


class ScramLogin:
    """RFC 5802 server: client-first -> server-first; client-final -> server-final (or refusal)."""

    ITERATIONS = 4096

    def __init__(self, mechanism: str, users: dict[str, str]):
        self.hash = SCRAM_HASHES[mechanism]
        self.users = users
        self.first_bare = self.server_first = self.nonce = self.user = None
        self.salt = os.urandom(16)

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash).digest()

    def step(self, message: bytes) -> tuple[bool | None, bytes]:
        text = message.decode()
        if self.server_first is None:
            self.first_bare = text.split(",", 2)[2]  # after the GS2 header ("n,,")
            attrs = dict(item.split("=", 1) for item in self.first_bare.split(","))
            self.user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            self.nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
            self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={self.ITERATIONS}"
            return None, self.server_first.encode()
        without_proof, _, proof = text.rpartition(",p=")
        attrs = dict(item.split("=", 1) for item in without_proof.split(","))
        password = self.users.get(self.user)
        if password is None or attrs.get("r") != self.nonce:
            return False, b""
        salted = hashlib.pbkdf2_hmac(self.hash, password.encode(), self.salt, self.ITERATIONS)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        auth_message = f"{self.first_bare},{self.server_first},{without_proof}".encode()
        signature = self._hmac(stored_key, auth_message)
        expected = bytes(a ^ b for a, b in zip(client_key, signature))
        if not hmac.compare_digest(base64.b64decode(proof), expected):
            return False, b""
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return True, b"v=" + base64.b64encode(server_signature)


def new_login(mechanism: str, users: dict[str, str]):
    return PlainLogin(users) if mechanism == "PLAIN" else ScramLogin(mechanism, users)


# --------------------------------------------------------------------------- the front


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(struct.pack(">i", len(payload)) + payload)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


class KafkaFront:
    """Listens on 127.0.0.1:port; `users` (name -> password) switches SASL on, `tls` (an SSLContext) TLS."""

    def __init__(self, upstream_port: int, port: int, users: dict[str, str] | None = None,
                 tls: ssl.SSLContext | None = None, mechanisms=("PLAIN", *SCRAM_HASHES)):
        self.upstream_port = upstream_port
        self.port = port
        self.users = users
        self.tls = tls
        self.mechanisms = list(mechanisms)
        self.refused: list[str] = []  # "mechanism user" of every refused login
        self.logins: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._writers: set = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "KafkaFront":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close every connection and the loop itself (nothing left for finalizers to warn about later)."""
        async def close():
            self._server.close()
            for writer in self._writers:
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            if self.users is not None and not await self._login(reader, writer, up_reader, up_writer):
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass  # a cancelled connection ends quietly (Python 3.11 logs cancelled stream handlers as errors)
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _login(self, reader, writer, up_reader, up_writer) -> bool:
        login = mechanism = None
        while True:
            frame = await _read_frame(reader)
            api_key, api_version, correlation_id, body = parse_request(frame)
            if api_key == API_VERSIONS:
                _write_frame(up_writer, frame)
                _write_frame(writer, await _read_frame(up_reader))
            elif api_key == SASL_HANDSHAKE:
                mechanism = handshake_mechanism(body)
                known = mechanism in self.mechanisms
                _write_frame(writer, handshake_response(correlation_id, 0 if known else UNSUPPORTED_SASL_MECHANISM,
                                                        self.mechanisms))
                if not known:
                    break
                login = new_login(mechanism, self.users)
            elif api_key == SASL_AUTHENTICATE and login is not None:
                done, reply = login.step(authenticate_bytes(api_version, body))
                if done is False:
                    self.refused.append(f"{mechanism} {login.user}")
                    _write_frame(writer, authenticate_response(
                        correlation_id, api_version, SASL_AUTHENTICATION_FAILED,
                        f"Authentication failed: invalid credentials with SASL mechanism {mechanism}", b""))
                    break
                _write_frame(writer, authenticate_response(correlation_id, api_version, 0, None, reply))
                if done:
                    self.logins.append(mechanism)
                    await writer.drain()
                    return True
            else:  # anything else before a login: refused, as a broker requiring SASL does
                break
            await writer.drain()
        await writer.drain()
        return False

"""The exporter-toolkit web configuration file: TLS, basic auth and response headers.

The same format as every Go exporter's ``--web.config.file``::

    tls_server_config:
      cert_file: server.crt            # relative paths: from this file's folder
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...            # a bcrypt hash, never the password

`load_web_config` validates it all at start (the files exist, the certificate
and key load and match, every hash is bcrypt) and raises ConfigError naming
the file, line and key. `WebConfigWatcher` re-reads the file and the
certificate files when their modification times change: a rotated
certificate is served on the next TLS connection (checked in the handshake,
see `tls_context`), a changed password list applies to the next request. A
reload that fails keeps the last good configuration and logs why.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from wasp.config.nodes import ConfigError, Node, load_yaml_file

__all__ = ["CLIENT_AUTH_TYPES", "TLSConfig", "WebConfig", "WebConfigWatcher", "load_web_config"]

log = logging.getLogger(__name__)

#: client_auth_type -> (ssl verify mode, needs client_ca_file)
CLIENT_AUTH_TYPES: dict[str, tuple[ssl.VerifyMode, bool]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_OPTIONAL, False),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, False),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
#: Go's cipher suite names (TLS 1.0-1.2; TLS 1.3 suites are not configurable) -> OpenSSL's
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
#: response headers the exporter-toolkit lets a configuration set
HEADERS = ("Cache-Control", "Content-Security-Policy", "Strict-Transport-Security",
           "X-Content-Type-Options", "X-Frame-Options", "X-XSS-Protection")

TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
            "max_version", "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}
HTTP_KEYS = {"http2", "headers"}


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """tls_server_config, with paths made absolute."""

    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        """The files a rotation changes."""
        return (self.cert_file, self.key_file, *((self.client_ca_file,) if self.client_ca_file else ()))

    def build(self) -> ssl.SSLContext:
        """A fresh server context from the files as they are now (ssl.SSLError, OSError)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.maximum_version = TLS_VERSIONS[self.max_version]
        if self.cipher_suites:
            ctx.set_ciphers(":".join(CIPHER_SUITES[c] for c in self.cipher_suites))
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.load_cert_chain(self.cert_file, self.key_file)
        mode, needs_ca = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        elif mode != ssl.CERT_NONE and not needs_ca:
            # a client certificate is asked for but not verified against a CA: accept any
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        ctx.verify_mode = mode
        return ctx


@dataclass(frozen=True, slots=True)
class WebConfig:
    """A validated web configuration file."""

    path: str
    tls: TLSConfig | None = None
    users: tuple[tuple[str, bytes], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def users_map(self) -> dict[str, bytes]:
        """User name -> bcrypt hash."""
        return dict(self.users)


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web configuration file (ConfigError when anything is wrong)."""
    file = str(path)
    root = Node(load_yaml_file(file), file).mapping(TOP_KEYS)
    base = Path(file).resolve().parent
    tls = _parse_tls(root.child("tls_server_config"), base) if root.has("tls_server_config") else None
    return WebConfig(path=file, tls=tls, users=_parse_users(root.child("basic_auth_users")),
                     headers=_parse_http(root.child("http_server_config")))


def _path(node: Node, base: Path) -> str:
    p = Path(node.str())
    full = p if p.is_absolute() else base / p
    if not full.is_file():
        node.error(f"file {str(full)!r} does not exist or is not a file")
    if not os.access(full, os.R_OK):
        node.error(f"file {str(full)!r} is not readable")
    return str(full)


def _parse_tls(node: Node, base: Path) -> TLSConfig:
    node.mapping(TLS_KEYS, required={"cert_file", "key_file"})
    auth_node = node.child("client_auth_type")
    auth = auth_node.choice(tuple(CLIENT_AUTH_TYPES), "NoClientCert")
    ca = _path(node.child("client_ca_file"), base) if node.has("client_ca_file") else None
    if CLIENT_AUTH_TYPES[auth][1] and ca is None:
        auth_node.error(f"{auth} needs client_ca_file (the CA that signs the clients' certificates)")
    if ca is not None and auth == "NoClientCert":
        node.child("client_ca_file").error(
            "is set but client_auth_type is NoClientCert; set client_auth_type to "
            "RequireAndVerifyClientCert (or VerifyClientCertIfGiven)")
    versions = tuple(TLS_VERSIONS)
    min_v = node.child("min_version").choice(versions, "TLS12")
    max_v = node.child("max_version").choice(versions, "TLS13")
    if versions.index(max_v) < versions.index(min_v):
        node.child("max_version").error(f"{max_v} is below min_version {min_v}")
    suites = node.child("cipher_suites").str_list()
    for i, s in enumerate(suites):
        if s not in CIPHER_SUITES:
            node.child("cipher_suites").sequence()[i].error(
                f"unknown cipher suite {s!r}; known (Go names): {', '.join(sorted(CIPHER_SUITES))}")
    # curve_preferences: accepted for compatibility; OpenSSL chooses the groups
    node.child("curve_preferences").str_list()
    tls = TLSConfig(
        cert_file=_path(node.child("cert_file"), base),
        key_file=_path(node.child("key_file"), base),
        client_auth_type=auth,
        client_ca_file=ca,
        min_version=min_v,
        max_version=max_v,
        cipher_suites=suites,
        prefer_server_cipher_suites=node.child("prefer_server_cipher_suites").bool(True),
    )
    try:
        tls.build()
    except (ssl.SSLError, OSError, ValueError) as e:
        what = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        key = "cipher_suites" if suites and "cipher" in str(e).lower() else "cert_file"
        if "CA" in str(e) or (ca and "verify" in str(e).lower()):
            key = "client_ca_file"
        node.child(key).error(
            f"cannot load the certificate, key or CA ({what}); cert_file and key_file must be a "
            "PEM certificate and its matching private key, client_ca_file PEM certificates")
    return tls


def _parse_users(node: Node) -> tuple[tuple[str, bytes], ...]:
    users = []
    for user, h in node.items():
        # never echo the value: a password pasted in place of a hash would end up in a log
        if not isinstance(h.value, str) or not h.value.startswith(("$2a$", "$2b$", "$2y$")):
            h.error("must be a bcrypt hash ($2a$, $2b$ or $2y$...), not a password: make one with "
                    "`python -c 'import bcrypt,getpass; print(bcrypt.hashpw("
                    "getpass.getpass().encode(), bcrypt.gensalt()).decode())'`")
        hashed = h.value.encode()
        try:
            bcrypt.checkpw(b"", hashed)
        except ValueError:
            h.error("is not a valid bcrypt hash (60 characters: $2b$, cost, salt and digest)")
        users.append((user, hashed))
    return tuple(users)


def _parse_http(node: Node) -> tuple[tuple[str, str], ...]:
    node.mapping(HTTP_KEYS)
    node.child("http2").bool(True)  # accepted; aiohttp serves HTTP/1.1
    out = []
    for name, v in node.child("headers").str_map().items():
        canonical = {h.lower(): h for h in HEADERS}.get(name.lower())
        if canonical is None:
            node.child("headers").child(name).error(
                f"header {name!r} may not be set; allowed: {', '.join(HEADERS)}")
        out.append((canonical, v))
    return tuple(out)


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a bcrypt hash ($2b$12$... -> 12)."""
    return int(hashed.split(b"$")[2])


class WebConfigWatcher:
    """The current web configuration, re-read when the file or its TLS files change.

    ``current()`` costs one ``stat`` per watched file (the web configuration and
    the certificate, key and CA files): cheap enough to run on every request
    and every TLS handshake. When a time stamp or size changed, everything is
    loaded and validated again; a broken file is logged and the last good
    configuration stays.
    """

    def __init__(self, config: WebConfig, *, on_change: Callable[[WebConfig], None] | None = None
                 ) -> None:
        self.config = config
        self._on_change = on_change
        self._stamp = self._stamps(config)
        self._failed_stamp: tuple[Any, ...] | None = None
        self.reloads = 0
        self.context: ssl.SSLContext | None = config.tls.build() if config.tls else None

    @staticmethod
    def _stamps(cfg: WebConfig) -> tuple[Any, ...]:
        out: list[Any] = []
        for f in (cfg.path, *(cfg.tls.files() if cfg.tls else ())):
            try:
                st = os.stat(f)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def current(self) -> WebConfig:
        """The configuration now (reloaded first when a file changed)."""
        stamp = self._stamps(self.config)
        if stamp != self._stamp and stamp != self._failed_stamp:
            try:
                cfg = load_web_config(self.config.path)
                ctx = cfg.tls.build() if cfg.tls else None
            except (ConfigError, ssl.SSLError, OSError) as e:
                self._failed_stamp = stamp
                log.error("web configuration not reloaded, the last good one stays: %s", e)
                return self.config
            if (cfg.tls is None) != (self.config.tls is None):
                log.error("web configuration not reloaded: switching TLS on or off needs a restart")
                self._failed_stamp = stamp
                return self.config
            self.config, self.context = cfg, ctx
            self._stamp = self._stamps(cfg)
            self._failed_stamp = None
            self.reloads += 1
            log.info("web configuration reloaded from %s", cfg.path)
            if self._on_change:
                self._on_change(cfg)
        return self.config

    def tls_context(self) -> ssl.SSLContext | None:
        """The context to listen with: each handshake switches to the newest certificate.

        The server socket keeps this first context; its SNI callback (which
        OpenSSL calls on every ClientHello, with or without a server name)
        checks the files and hands the connection the context built from the
        current ones. The client-certificate mode and protocol versions are
        the first context's: changing those needs a restart.
        """
        if self.context is None:
            return None
        listening = self.context

        def on_hello(conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                     ctx: ssl.SSLContext) -> None:
            self.current()
            if self.context is not None and conn.context is not self.context:
                conn.context = self.context

        listening.sni_callback = on_hello
        return listening

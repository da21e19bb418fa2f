"""Mutual TLS between the shop's processes: each presents its role's certificate, and accepts a peer
only if the shop's CA signed the peer's. A process's role is its certificate's common name, which
a server reads to authorize a call (infra/rpc/server.py).

The material, in the TLS dir (`<data_dir>/tls` unless SHOP_TLS_DIR names another):

    ca.crt, ca.key         the CA (its key only where `shop prepare` made the CA)
    <role>.crt, <role>.key  one per role: the six services, the front doors, and "admin" (the
                            operator's own tools, e.g. grpcurl)

Providers register IP addresses in Zookeeper, which no certificate could list in advance, so a
server's certificate names the service instead: `goods.shop.internal` (and `shop.internal`, any
shop process, for the operator's calls to every process). A client checks the name of the service
it meant to call (`grpc.ssl_target_name_override`), whatever address it dials. The callers that
serve nothing (the front doors, admin) get a client-only certificate: none can pose as a server.

`shop prepare` makes what is missing and never replaces a file that is there: an operator who
brings their own CA puts ca.crt (without ca.key) and every role's files in the dir, or points a
process at its own files with SHOP_TLS_CA, SHOP_TLS_CERT and SHOP_TLS_KEY.
"""
from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shop.infra import metrics
from shop.infra.config import SERVICES, Settings
from shop.infra.files import private_dir, write_private

log = logging.getLogger("shop.rpc.grpc")

DOMAIN = "shop.internal"
# Every role that makes or takes gRPC calls: the services serve (and call each other); the front
# doors and the operator's tools only call.
CLIENT_ROLES = ("web", "order-web", "pay-web", "admin")
ROLES = (*SERVICES, *CLIENT_ROLES)
CA_DAYS = 3650
CERT_DAYS = 825
# A certificate prepare made that runs out within this is made anew by the next prepare (every
# `shop cluster up` runs one); each process reads its own at start, so a restart takes the new one.
RENEW_DAYS = 30


def server_name(service: str | None = None) -> str:
    """The name a server's certificate carries: one service's, or (None) any shop process's."""
    return f"{service}.{DOMAIN}" if service else DOMAIN


@dataclass(frozen=True)
class Tls:
    """One process's side of mutual TLS, in PEM: the CA it trusts, its certificate and key."""

    ca: bytes
    cert: bytes
    key: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        # require_client_auth: a caller without a certificate from the shop's CA is refused at the
        # handshake, before any method runs.
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    @functools.cached_property
    def _channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def channel(self, address: str, name: str) -> grpc.aio.Channel:
        """A channel to `address` that accepts only a server whose certificate carries `name`."""
        return grpc.aio.secure_channel(address, self._channel_credentials,
                                       options=[("grpc.ssl_target_name_override", name)])


def open_channel(address: str, tls: Tls | None, name: str) -> grpc.aio.Channel:
    """Mutual TLS, or plain gRPC when TLS is off (SHOP_RPC_TLS=off: only to measure its cost)."""
    if tls is None:
        return grpc.aio.insecure_channel(address)
    return tls.channel(address, name)


def peer_role(context: grpc.aio.ServicerContext) -> str | None:
    """The calling process's role: its certificate's common name (None on a plain connection)."""
    names = context.auth_context().get("x509_common_name")
    return names[0].decode() if names else None


async def refuse_unless(context: grpc.aio.ServicerContext, callers: Collection[str], where: str) -> None:
    """End the call with PERMISSION_DENIED unless the caller's role is one of `callers`. Every
    caller holds a certificate of the shop's CA: one that calls what its role never calls is a
    misconfiguration or a process taken over, and is logged."""
    role = peer_role(context)
    if role not in callers:
        log.warning("refused %s to %s (only %s may call it)", where, role or "an unknown caller", sorted(callers))
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{where} is not for {role or 'an unknown caller'}")


def tls_dir(settings: Settings) -> Path:
    return settings.tls_dir or settings.data_dir / "tls"


def load(settings: Settings, role: str) -> Tls | None:
    """This process's material for `role`, or None with SHOP_RPC_TLS=off."""
    if settings.rpc_tls == "off":
        return None
    where = tls_dir(settings)
    paths = (settings.tls_ca or where / "ca.crt", settings.tls_cert or where / f"{role}.crt",
             settings.tls_key or where / f"{role}.key")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"TLS material missing: {', '.join(missing)}. `shop prepare` makes it in {where}, "
                                "or set SHOP_TLS_CA, SHOP_TLS_CERT and SHOP_TLS_KEY to your own files")
    ca, cert, key = (p.read_bytes() for p in paths)
    runs_out = x509.load_pem_x509_certificate(cert).not_valid_after_utc
    metrics.certificate_loaded(runs_out.timestamp())
    if _within_renewal(runs_out):
        log.warning("this process's certificate (%s) runs out at %s: `shop prepare` renews prepare's own, then "
                    "restart the process", paths[1], runs_out.isoformat())
    return Tls(ca, cert, key)


# -- making the material (`shop prepare`) ------------------------------------------------------


class TlsMaterialError(Exception):
    """The TLS dir holds only part of what it needs, and prepare may not make the rest."""


def ensure_material(directory: Path, roles: Sequence[str] = ROLES) -> None:
    """Make, in `directory`, what is missing of the CA and of each role's certificate and key.
    Existing files are used as they are: a second prepare changes nothing, and an operator's own CA
    (ca.crt without ca.key) is only checked for completeness. The one file replaced is a role's
    certificate that this CA's key signed and that runs out within RENEW_DAYS: it is made anew,
    with a new key (one of another CA that runs out is only warned of)."""
    private_dir(directory)
    ca_crt, ca_key = directory / "ca.crt", directory / "ca.key"
    if not ca_crt.exists():
        if ca_key.exists():
            raise TlsMaterialError(f"{ca_key} without {ca_crt}: remove it, or bring the certificate")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shop"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "shop internal CA")])
        cert = (_builder(name, name, key.public_key(), CA_DAYS)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_usage(cert_sign=True), critical=True)
                .sign(key, hashes.SHA256()))
        _write_pair(ca_key, ca_crt, key, cert)
    for role in roles:
        crt, key_path = directory / f"{role}.crt", directory / f"{role}.key"
        serves = [role] if role in SERVICES else []
        if crt.exists() and key_path.exists():
            if _runs_out_soon(crt, ca_crt if ca_key.exists() else None):
                issue(directory, role, serves)
            continue
        if crt.exists() or key_path.exists():
            raise TlsMaterialError(f"{crt if crt.exists() else key_path} without its pair: remove it, or bring both")
        if not ca_key.exists():
            raise TlsMaterialError(f"{crt} is missing and {ca_crt} is not prepare's (no {ca_key}) to sign one: "
                                   "bring it, with its key")
        issue(directory, role, serves)


def _runs_out_soon(crt: Path, ca_crt: Path | None) -> bool:
    """Whether prepare is to make this certificate anew: it runs out within RENEW_DAYS (or has) and
    the CA at `ca_crt` (prepare's own, whose key is there) signed it. One it cannot renew is warned of."""
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    runs_out = cert.not_valid_after_utc
    if not _within_renewal(runs_out):
        return False
    if ca_crt is not None:
        try:
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_crt.read_bytes()))
        except (ValueError, TypeError, InvalidSignature):
            pass
        else:
            log.warning("%s runs out at %s: made anew", crt, runs_out.isoformat())
            return True
    log.warning("%s runs out at %s and is not prepare's to renew (another CA signed it): bring a new one",
                crt, runs_out.isoformat())
    return False


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _within_renewal(runs_out: datetime.datetime) -> bool:
    """Whether a certificate running out then is one prepare renews now (or has run out)."""
    return runs_out - _now() < datetime.timedelta(days=RENEW_DAYS)


def issue(directory: Path, role: str, serves: Sequence[str], days: int = CERT_DAYS) -> None:
    """<role>.crt and <role>.key in `directory`, signed by its CA: a client certificate for `role`,
    and a server certificate for the services in `serves` (none: a caller only), valid `days`."""
    ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    signer = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(server_name(s)) for s in serves] + ([x509.DNSName(server_name())] if serves else [])
    uses = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if serves \
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shop"),
                         x509.NameAttribute(NameOID.COMMON_NAME, role)])
    builder = (_builder(subject, ca.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_usage(), critical=True)
               .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                              critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    _write_pair(directory / f"{role}.key", directory / f"{role}.crt", key, builder.sign(signer, hashes.SHA256()))


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # a peer whose clock is a little behind
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def _write_pair(key_path: Path, crt: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    """The key (0600) first, the certificate last, each written whole, synced and renamed into place
    (write_private): a certificate on disk always has its whole key beside it."""
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    write_private(crt, cert.public_bytes(serialization.Encoding.PEM))

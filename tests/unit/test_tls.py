"""The TLS material `shop prepare` makes (infra/tls.py): private keys, certificates that say what
each role may be, a second prepare that changes nothing, and an operator's own files left alone."""
from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shop.bootstrap import prepare
from shop.infra import metrics
from shop.infra.config import SERVICES, Settings
from shop.infra.tls import (
    CERT_DAYS,
    CLIENT_ROLES,
    RENEW_DAYS,
    ROLES,
    TlsMaterialError,
    ensure_material,
    issue,
    load,
    server_name,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_prepare_makes_a_private_ca_and_a_certificate_per_role_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", rpc_tls="on")
    prepare(settings)
    tls = tmp_path / "data" / "tls"
    names = {"ca.crt", "ca.key"} | {f"{r}{ext}" for r in ROLES for ext in (".crt", ".key")}
    assert {p.name for p in tls.iterdir()} == names
    assert _mode(tls) == 0o700
    assert {p.name: _mode(p) for p in tls.iterdir()} == dict.fromkeys(names, 0o600)

    first = _snapshot(tls)
    prepare(settings)  # a second prepare uses what is there
    assert _snapshot(tls) == first

    # Every process of the shop finds its own, by role.
    for role in ROLES:
        material = load(settings, role)
        assert material is not None and material.cert == first[f"{role}.crt"][0]


def test_each_certificate_says_what_its_role_may_be(tmp_path: Path) -> None:
    ensure_material(tmp_path)
    ca = _cert(tmp_path / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for role in ROLES:
        cert = _cert(tmp_path / f"{role}.crt")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == role  # the role a server reads
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        uses = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if role in SERVICES:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == [server_name(role), server_name()]
            assert uses == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        else:
            # A caller only: no name a client would accept a server by.
            assert role in CLIENT_ROLES and uses == {ExtendedKeyUsageOID.CLIENT_AUTH}
            with pytest.raises(x509.ExtensionNotFound):
                cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_an_operators_ca_is_never_replaced(tmp_path: Path) -> None:
    ours = tmp_path / "theirs-made"
    ensure_material(ours)
    brought = tmp_path / "tls"
    brought.mkdir()
    # Their CA without its key, and certificates for some roles only.
    for name in ("ca.crt", "order.crt", "order.key"):
        (brought / name).write_bytes((ours / name).read_bytes())
    before = _snapshot(brought)
    with pytest.raises(TlsMaterialError, match="user.crt is missing"):
        ensure_material(brought)
    assert _snapshot(brought) == before  # nothing made, nothing replaced
    ensure_material(brought, ["order"])  # complete for what is asked: fine, untouched
    assert _snapshot(brought) == before

    half = tmp_path / "half"
    ensure_material(half, [])
    (half / "goods.key").write_bytes(b"an operator's key")
    with pytest.raises(TlsMaterialError, match="goods.key without its pair"):
        ensure_material(half, ["goods"])
    assert (half / "goods.key").read_bytes() == b"an operator's key"


def test_prepare_leaves_the_tls_dir_alone_when_the_operator_names_their_files(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    ensure_material(theirs, ["web"])
    settings = Settings(data_dir=tmp_path / "data", rpc_tls="on", tls_ca=theirs / "ca.crt",
                        tls_cert=theirs / "web.crt", tls_key=theirs / "web.key")
    prepare(settings)
    assert not (tmp_path / "data" / "tls").exists()
    material = load(settings, "order")  # the named files, whatever the role
    assert material is not None and material.cert == (theirs / "web.crt").read_bytes()


def test_load_says_what_is_missing_and_off_is_plain(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shop prepare"):
        load(Settings(data_dir=tmp_path, rpc_tls="on"), "goods")
    assert load(Settings(data_dir=tmp_path, rpc_tls="off"), "goods") is None
    prepare(Settings(data_dir=tmp_path / "plain", rpc_tls="off"))
    assert not (tmp_path / "plain" / "tls").exists()


def _runs_out_in(directory: Path, role: str, days: int) -> None:
    """The role's pair made anew by the directory's CA, valid `days` from now."""
    (directory / f"{role}.crt").unlink(missing_ok=True)
    (directory / f"{role}.key").unlink(missing_ok=True)
    issue(directory, role, serves=[role] if role in SERVICES else [], days=days)


def test_prepare_renews_its_own_certificates_before_they_run_out(tmp_path: Path, caplog) -> None:
    ensure_material(tmp_path)
    _runs_out_in(tmp_path, "goods", RENEW_DAYS - 1)
    _runs_out_in(tmp_path, "web", RENEW_DAYS + 1)
    before = _snapshot(tmp_path)
    ensure_material(tmp_path)
    after = _snapshot(tmp_path)
    assert {n for n in after if after[n] != before[n]} == {"goods.crt", "goods.key"}  # only what runs out
    renewed = _cert(tmp_path / "goods.crt")
    renewed.verify_directly_issued_by(_cert(tmp_path / "ca.crt"))
    assert renewed.not_valid_after_utc - datetime.now(UTC) > timedelta(days=CERT_DAYS - 1)
    assert renewed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "goods"
    assert any("goods.crt runs out" in r.getMessage() and "made anew" in r.getMessage() for r in caplog.records)
    assert _mode(tmp_path / "goods.key") == 0o600
    assert _snapshot(tmp_path) == after and ensure_material(tmp_path) is None and _snapshot(tmp_path) == after


def test_a_certificate_of_another_ca_is_warned_of_never_replaced(tmp_path: Path, caplog) -> None:
    theirs = tmp_path / "theirs"
    ensure_material(theirs, [])
    _runs_out_in(theirs, "order", 3)
    ours = tmp_path / "ours"
    ensure_material(ours, [])
    for name in ("order.crt", "order.key"):  # signed by their CA, in a dir whose CA is prepare's
        (ours / name).write_bytes((theirs / name).read_bytes())
    brought = tmp_path / "brought"  # and with their CA, but not its key
    brought.mkdir()
    for name in ("ca.crt", "order.crt", "order.key"):
        (brought / name).write_bytes((theirs / name).read_bytes())
    for directory in (ours, brought):
        before = _snapshot(directory)
        caplog.clear()
        ensure_material(directory, ["order"])
        assert _snapshot(directory) == before
        assert any("is not prepare's to renew" in r.getMessage() for r in caplog.records), directory


def test_a_process_says_when_its_certificate_runs_out(tmp_path: Path, caplog) -> None:
    settings = Settings(data_dir=tmp_path, rpc_tls="on")
    ensure_material(tmp_path / "tls", ["user", "pay"])
    _runs_out_in(tmp_path / "tls", "pay", 5)
    for role, days, warned in (("user", CERT_DAYS, False), ("pay", 5, True)):
        caplog.clear()
        load(settings, role)
        runs_out = _cert(tmp_path / "tls" / f"{role}.crt").not_valid_after_utc
        assert abs((runs_out - datetime.now(UTC)) - timedelta(days=days)) < timedelta(minutes=1)
        assert metrics.CERT_EXPIRY._value.get() == runs_out.timestamp()
        assert any("runs out" in r.getMessage() for r in caplog.records) == warned, role

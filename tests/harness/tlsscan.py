"""A TLS scan of a hub's HTTPS port with sslyze, judged against Mozilla's TLS configurations."""

from __future__ import annotations

from pathlib import Path

VERSIONS = {
    "ssl_2_0_cipher_suites": "SSL 2.0",
    "ssl_3_0_cipher_suites": "SSL 3.0",
    "tls_1_0_cipher_suites": "TLS 1.0",
    "tls_1_1_cipher_suites": "TLS 1.1",
    "tls_1_2_cipher_suites": "TLS 1.2",
    "tls_1_3_cipher_suites": "TLS 1.3",
}
# Issues that belong to the certificate (Pebble's, in the tests) rather than to the server's TLS settings.
CERTIFICATE_ISSUES = {"certificate_path_validation", "certificate_curves", "rsa_key_size", "certificate_types",
                      "certificate_signatures", "maximum_certificate_lifespan"}  # fmt: skip


def scan(name: str, port: int, ip: str = "127.0.0.1", ca_file: str | None = None) -> dict:
    """Scan ``name`` (sent as SNI and Host) at ``ip``:``port``: protocols, ciphers, HSTS, and for each Mozilla
    profile the issues sslyze's checker finds (certificate issues apart: in the tests the certificate is Pebble's).
    """
    # sslyze is imported here: a reader's venv for --target local (requirements-check.txt) has no sslyze.
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandAttemptStatusEnum,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )
    from sslyze.plugins.scan_commands import ScanCommand

    extra = ScanCommandsExtraArguments()
    if ca_file:  # the CA that issued the certificate, when no system trusts it (Pebble's, Let's Encrypt's staging)
        extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(ca_file)))
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=name, port=port, ip_address=ip),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.HTTP_HEADERS},
        scan_commands_extra_arguments=extra,
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    result = next(iter(scanner.get_results()))
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        raise AssertionError(f"sslyze could not scan {name} at {ip}:{port}: {result.connectivity_error_trace}")
    found = result.scan_result
    protocols, ciphers = [], {}
    for attr, label in VERSIONS.items():
        attempt = getattr(found, attr)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            raise AssertionError(f"sslyze's {label} scan did not complete: {attempt.error_reason}")
        if attempt.result.is_tls_version_supported:
            protocols.append(label)
            ciphers[label] = [c.cipher_suite.name for c in attempt.result.accepted_cipher_suites]
    hsts = found.http_headers.result.strict_transport_security_header if found.http_headers.result else None
    curves = found.elliptic_curves.result
    profiles = {}
    for profile in (TlsConfigurationEnum.MOZILLA_MODERN, TlsConfigurationEnum.MOZILLA_INTERMEDIATE,
                    TlsConfigurationEnum.MOZILLA_OLD):  # fmt: skip
        try:
            check_server_against_tls_configuration(result, MozillaTlsConfiguration.get(profile))
            issues = {}
        except ServerNotCompliantWithTlsConfiguration as exc:
            issues = exc.issues
        profiles[profile.value] = {
            "server": {k: v for k, v in issues.items() if k not in CERTIFICATE_ISSUES},
            "certificate": {k: v for k, v in issues.items() if k in CERTIFICATE_ISSUES},
        }
    return {
        "protocols": protocols,
        "ciphers": ciphers,
        "curves": [c.name for c in curves.supported_curves] if curves and curves.supported_curves else [],
        "hsts": None
        if hsts is None
        else {
            "max_age": hsts.max_age,
            "include_subdomains": hsts.include_subdomains,
            "preload": hsts.preload,
        },  # fmt: skip
        "mozilla": profiles,
        "meets": [p for p, v in profiles.items() if not v["server"]],
    }

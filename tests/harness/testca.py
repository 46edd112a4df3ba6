"""Test CAs for the stand-ins that run in a test VM (GitHub's, the OpenID Connect provider).

Each stand-in serves HTTPS on 127.0.0.1 with a certificate from a CA made per run;
the hub trusts it through ``SSL_CERT_FILE`` = the system's CAs plus that CA.
"""

from __future__ import annotations

# Python 3.13 verifies strictly (VERIFY_X509_STRICT): the CA needs its key usage, the leaf its identifiers.
STRICT_CA = "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
# A CA as a plain `openssl req -x509` makes it, as many private CAs were made: no key usage.
LEGACY_CA = ""


def certificates_script(directory: str, ca_name: str, ca_extensions: str = STRICT_CA) -> str:
    """Shell commands that make, in ``directory``: ca.pem (the CA), cert.pem and key.pem (for 127.0.0.1),
    and bundle.pem (the system's CAs plus this one)."""
    return f"""
set -e
install -d -m 0755 {directory}
cd {directory}
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={ca_name} {ca_extensions} \\
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out req.csr 2>/dev/null
printf '%s\\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \\
    'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \\
    'subjectKeyIdentifier=hash' 'authorityKeyIdentifier=keyid,issuer' > san.ext
openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \\
    -out cert.pem 2>/dev/null
chmod 0600 ca.key key.pem
cat /etc/ssl/certs/ca-certificates.crt ca.pem > bundle.pem
"""

"""The shipped broker configuration on a machine without Docker: what differs from the eclipse-mosquitto container.

Used by deploy/check_wheel.py and tests/_prod_broker.py, which start a private mosquitto from deploy/mosquitto/ with
only ports, paths, the plugin's location and a throwaway TLS certificate changed.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from glob import glob
from pathlib import Path

# Where the eclipse-mosquitto image has the dynamic-security plugin (deploy/mosquitto/*.conf name this path).
PLUGIN_IN_IMAGE = "/usr/lib/mosquitto_dynamic_security.so"


def local_plugin() -> str:
    """This machine's dynamic-security plugin (Debian's mosquitto package: /usr/lib/<arch>/)."""
    found = sorted(glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob(PLUGIN_IN_IMAGE))
    if not found:
        raise FileNotFoundError("mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is not installed")
    return found[0]


def make_certs(folder: Path) -> Path:
    """A throwaway CA, and server.crt / server.key it signed for 127.0.0.1 and localhost (openssl); the CA file."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=folder, check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # EC: quick to generate
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=lccm test CA")
    run("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return folder / "ca.crt"


def broker_user() -> str | None:
    """Started as root, mosquitto drops to the `mosquitto` user, which must own its files."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto").pw_name
    except KeyError:
        return None

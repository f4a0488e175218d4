"""docker-compose.yml asks for the secrets instead of defaulting them, and publishes
ports on 127.0.0.1 unless told otherwise (read as text: no YAML parser needed)."""

import re
from pathlib import Path

COMPOSE = (Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text()


def _setting(name: str) -> list[str]:
    """Every value given to `name` in the file (the app services share one block)."""
    return re.findall(rf"^\s+{name}:\s*(.*)$", COMPOSE, flags=re.MULTILINE)


def test_the_secrets_are_required_not_defaulted():
    for name in ("SECRET_KEY", "FIRST_SUPERUSER_PASSWORD"):
        values = _setting(name)
        assert len(values) == 1 and re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", values[0]), values
    assert "secrets.token_urlsafe(32)" in _setting("SECRET_KEY")[0]
    assert "changethis" not in _setting("SECRET_KEY")[0] + _setting("FIRST_SUPERUSER_PASSWORD")[0]
    assert _setting("ENVIRONMENT") == ["${ENVIRONMENT:-production}"]
    assert _setting("METRICS_TOKEN") == ["${METRICS_TOKEN:-}"]


def test_ports_are_published_on_localhost_unless_told_otherwise():
    ports = re.findall(r"^\s+- \"([^\"]*:\d+)\"$", COMPOSE, flags=re.MULTILINE)
    assert "${BIND_ADDRESS:-127.0.0.1}:${PORT:-8000}:8000" in ports
    assert "127.0.0.1:${FLOWER_PORT:-5555}:5555" in ports
    for port in ports:
        # host:host_port:container_port, never host_port:container_port (all interfaces)
        assert port.startswith(("127.0.0.1:", "${BIND_ADDRESS:-127.0.0.1}:")), port

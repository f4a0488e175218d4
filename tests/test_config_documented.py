"""Every setting read from the environment is in the README's environment table, and
every row of that table is a setting something reads."""

import ast
import re
from pathlib import Path

from backend import config

ROOT = Path(__file__).resolve().parent.parent
READERS = {"_env", "_int", "_float", "_bool"}


def _names_read_by_config() -> set[str]:
    """Environment names read by backend/config.py, except TestConfig's own (TEST_*)."""
    tree = ast.parse((ROOT / "backend" / "config.py").read_text())
    skipped = {
        id(node)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef) and cls.name == "TestConfig"
        for node in ast.walk(cls)
    }
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and id(node) not in skipped
            and isinstance(node.func, ast.Name)
            and node.func.id in READERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def _names_in_readme_table() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Environment\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def _names_read_by_launchers() -> set[str]:
    gunicorn = re.findall(r"environ\.get\(['\"]([A-Z_]+)", (ROOT / "gunicorn.conf.py").read_text())
    procfile = re.findall(r"\$\{([A-Z_]+)", (ROOT / "Procfile").read_text())
    return set(gunicorn) | set(procfile)


def test_every_environment_setting_is_documented_and_every_documented_one_is_read():
    read = _names_read_by_config() | set(config.PROCESS_SETTINGS)
    documented = _names_in_readme_table()
    assert read - documented == set(), "read but not in the README's environment table"
    assert documented - read == set(), "in the README's environment table but read by nothing"


def test_settings_outside_config_are_the_launchers_and_commands_own():
    outside = set(config.PROCESS_SETTINGS)
    assert _names_read_by_launchers() <= outside | _names_read_by_config()
    assert "SEED_DEMO_PASSWORD" in outside  # read by `flask seed` when it runs


def test_config_keys_read_from_the_environment_are_on_the_config_class():
    """No module reads a setting the Config class does not define (no ad hoc defaults)."""
    for name in ("CELERY_PREFETCH_MULTIPLIER", "CELERY_BROKER_MAX_CONNECTIONS", "CELERY_TASK_ALWAYS_EAGER"):
        assert hasattr(config.Config, name)
    assert config.Config.LOG_LEVEL == config.Config.LOG_LEVEL.upper()

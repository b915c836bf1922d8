"""The export/import options as the command line and twistd take them."""

from __future__ import annotations

from pathlib import Path

import pytest

from devpi_twisted.cli import CommandOptions
from devpi_twisted.config import ConfigError
from devpi_twisted.service import Options


def test_cli_export_and_import_take_the_dump_directory(tmp_path: Path) -> None:
    options = CommandOptions()
    options.parseOptions(["export", "--serverdir", str(tmp_path / "s"), "--hard-links",
                          "--include-mirrored-files", str(tmp_path / "d")])
    config = options.subOptions.config()
    assert config.export_dir == tmp_path / "d" and config.import_dir is None
    assert config.hard_links and config.include_mirrored_files
    assert config.export_format == 6
    options = CommandOptions()
    options.parseOptions(["export", "--format", "7", str(tmp_path / "d")])
    assert options.subOptions.config().export_format == 7
    options = CommandOptions()
    options.parseOptions(["export", "--format", "8", str(tmp_path / "d")])
    with pytest.raises(ConfigError, match="--format must be 6 or 7"):
        options.subOptions.config()
    options = CommandOptions()
    options.parseOptions(["import", "--serverdir", str(tmp_path / "s"), "--no-root-pypi",
                          "--skip-import-type", "a, b", "dump"])
    config = options.subOptions.config()
    assert config.skip_import_types == ("a", "b")
    assert config.import_dir == Path("dump").absolute() and not config.root_pypi
    assert not config.hard_links


def test_twistd_spelling_and_its_one_job_at_a_time(tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--serverdir", str(tmp_path), "--import", "dump", "--hard-links"])
    config = options.config()
    assert config.import_dir == Path("dump").absolute() and config.hard_links
    options = Options()
    options.parseOptions(["--export", "a", "--import", "b"])
    with pytest.raises(ConfigError, match="--export and --import given"):
        options.config()

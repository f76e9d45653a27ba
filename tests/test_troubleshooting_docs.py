"""docs/troubleshooting.md, "Snakemake's own sharp edges": each failing form fails as quoted, and
each form the page gives instead is accepted (dry runs of a copy of the workflow, default config;
the read-only case on a one-rule workflow)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md").read_text()
PROFILE_LINE = "Using workflow specific profile {} for setting default command line arguments."
# the messages the page quotes, as Snakemake prints them
NO_CONFIGFILE = "FileNotFoundError: [Errno 2] No such file or directory: 'my.yaml'"
DOTTED = "ValueError: Invalid config definition: Config entry must start with a valid identifier."
SWALLOWED = "ValueError: dictionary update sequence element #1 has length 1; 2 is required"
CONFIG_SWALLOWED = "(Unparsable value: 'submission')"
CONFIGFILE_SWALLOWED = "No such file or directory: 'submission'"
PROTECTED = "Write-protected output files for rule"
DENIED = "PermissionError: [Errno 13] Permission denied:"


def on_one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize(
    "quoted",
    [
        PROFILE_LINE.format("workflow/profiles/cpu"),
        NO_CONFIGFILE,
        DOTTED,
        "snakemake submission --config 'folds={\"n_folds\": 3}'",
        SWALLOWED,
        CONFIG_SWALLOWED,
        CONFIGFILE_SWALLOWED,
        "snakemake --cores 8 --resources gpu=1 -- submission",
        PROTECTED,
        DENIED,
        "chmod -R u+w",
    ],
)
def test_the_page_quotes_it(quoted):
    assert on_one_line(quoted) in on_one_line(DOCS)


@pytest.fixture(scope="module")
def workdir(repo, tmp_path_factory) -> Path:
    """A copy of the workflow with the default config and profile."""
    path = tmp_path_factory.mktemp("troubleshooting")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(repo / name, path)
    for folder in ("workflow", "envs", "src"):
        shutil.copytree(repo / folder, path / folder)
    (path / "profiles").symlink_to("workflow/profiles")
    return path


def snakemake(cwd: Path, *args: str, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [*prefix, "snakemake", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )
    return result.returncode, result.stdout + result.stderr


def trains(said: str) -> int:
    """The train jobs of a dry run's "Job stats"."""
    return int(re.search(r"^train\s+(\d+)$", said, re.M).group(1))


@pytest.fixture(scope="module")
def plain(workdir) -> int:
    """The train jobs of the plain `snakemake -n submission` (config.yaml, default profile)."""
    rc, said = snakemake(workdir, "-n", "submission")
    assert rc == 0 and PROFILE_LINE.format("profiles/default") in said
    return trains(said)


def with_3_folds(workdir: Path, plain: int) -> int:
    """The train jobs of the plain plan with 3 folds instead of config.yaml's."""
    n_folds = yaml.safe_load((workdir / "config.yaml").read_text())["folds"]["n_folds"]
    return plain // n_folds * 3


def test_a_misspelt_workflow_profile_is_ignored_silently(workdir, plain):
    rc, said = snakemake(
        workdir, "-n", "--workflow-profile", "workflow/profiles/cpuu", "submission"
    )
    assert rc == 0 and "Using workflow specific profile" not in said  # not even the default
    assert trains(said) == plain  # config.yaml's plan
    rc, said = snakemake(workdir, "-n", "--workflow-profile", "workflow/profiles/cpu", "submission")
    assert rc == 0 and PROFILE_LINE.format("workflow/profiles/cpu") in said
    assert trains(said) != plain  # the cpu recipe's (stage 1 on 3 folds)


def test_a_missing_configfile_ends_in_a_traceback_naming_it(workdir, plain):
    rc, said = snakemake(workdir, "-n", "submission", "--configfile", "my.yaml")
    assert rc != 0 and "Traceback" in said and NO_CONFIGFILE in said
    (workdir / "my.yaml").write_text("folds:\n  n_folds: 3\n")
    try:
        rc, said = snakemake(workdir, "-n", "submission", "--configfile", "my.yaml")
    finally:
        (workdir / "my.yaml").unlink()
    assert rc == 0 and trains(said) == with_3_folds(workdir, plain)


def test_config_takes_nested_keys_as_yaml_not_dotted(workdir, plain):
    rc, said = snakemake(workdir, "-n", "submission", "--config", "folds.n_folds=3")
    assert rc != 0 and "Traceback" in said and DOTTED in said
    rc, said = snakemake(workdir, "-n", "submission", "--config", 'folds={"n_folds": 3}')
    assert rc == 0 and trains(said) == with_3_folds(workdir, plain)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--cores", "8", "--resources", "gpu=1"], SWALLOWED),
        (["--config", 'folds={"n_folds": 3}'], CONFIG_SWALLOWED),
        (["--configfile", "config.yaml"], CONFIGFILE_SWALLOWED),
    ],
)
def test_list_options_swallow_targets_unless_a_double_dash_ends_them(workdir, options, message):
    rc, said = snakemake(workdir, "-n", *options, "submission")
    assert rc != 0 and message in said
    rc, said = snakemake(workdir, "-n", *options, "--", "submission")
    assert rc == 0 and "submission" in said and trains(said) > 0


def without_root_powers() -> tuple[str, ...]:
    """A prefix that makes root obey file modes (dropping CAP_DAC_OVERRIDE), or () if not root."""
    if os.geteuid() != 0:
        return ()
    caps = "-dac_override,-dac_read_search,-fowner"
    prefix = ("setpriv", "--bounding-set", caps, "--inh-caps", caps)
    if not shutil.which("setpriv") or subprocess.run([*prefix, "true"]).returncode != 0:
        pytest.skip("root here, and its file-mode powers cannot be dropped")
    return prefix


def test_a_read_only_output_stops_a_forced_rerun_until_made_writable(tmp_path):
    rule = [
        "rule make:",
        "    output:",
        '        "out/x.txt",',
        "    shell:",
        '        "echo made > {output}"',
    ]
    (tmp_path / "Snakefile").write_text("\n".join(rule) + "\n")
    prefix = without_root_powers()
    out = tmp_path / "out" / "x.txt"
    rerun = ("--cores", "1", "--forcerun", "make", "--", "out/x.txt")
    out.parent.mkdir()
    out.write_text("kept\n")  # a forced rerun replaces it, made by this rule or not
    out.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # chmod a-w out/x.txt
    rc, said = snakemake(tmp_path, *rerun, prefix=prefix)
    assert rc != 0 and "ProtectedOutputException" in said and PROTECTED in said
    out.chmod(0o644)
    out.parent.chmod(0o555)  # chmod a-w out
    try:
        rc, said = snakemake(tmp_path, *rerun, prefix=prefix)
    finally:
        out.parent.chmod(0o755)  # chmod u+w out
    assert rc != 0 and "Traceback" in said and f"{DENIED} 'out/x.txt'" in said
    rc, said = snakemake(tmp_path, *rerun, prefix=prefix)
    assert rc == 0 and out.read_text() == "made\n"

"""Run the reliability suite and count its cases per kind of failure; one record in bench/records/.

Usage: python -m bench reliability [--full] [--out PATH]

Runs ``pytest`` (slow tests included) on tests/test_reliability.py, the bad-input cases of
tests/test_kaggle_reader.py and tests/test_workflow.py, tests/test_resume_kill.py, the data
edits of tests/test_data_reruns.py and the docs' commands (tests/test_troubleshooting_docs.py,
tests/test_sections_docs.py), reads the JUnit XML report and counts every case (a parametrised
case counts once per parameter) under one of seven kinds: corrupt inputs, kills, disk full,
invalidation (a changed config value or data file reruns what reads it, and only that), user's
files (a folder output never deletes a file it did not write), bad options (one line at
parsing), documented commands (each documented command, and Snakemake's own failing forms, do
what the page says). ``--full`` adds the tests of tests/test_workflow.py that need its full DAG
run first (what a dry run reruns) and every GPU profile's whole DAG on tiny data, minutes more.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.common import REPO, write_result

KINDS = [
    "corrupt inputs",
    "kills",
    "disk full",
    "invalidation",
    "user's files",
    "bad options",
    "documented commands",
]
PREFIXES = {  # tests/test_reliability.py names each test by the kind of failure it checks
    "test_corrupt_": "corrupt inputs",
    "test_kill_": "kills",
    "test_disk_full_": "disk full",
    "test_invalidation_": "invalidation",
    "test_user_files_": "user's files",
    "test_option_": "bad options",
}
OTHERS = {  # cases kept where they were written first
    "tests/test_kaggle_reader.py": {
        "test_missing_data_dir": "corrupt inputs",
        "test_extra_and_missing_columns": "corrupt inputs",
        "test_missing_depth": "corrupt inputs",
        "test_duplicated_id": "corrupt inputs",
        "test_wrong_size_tile": "corrupt inputs",
        "test_corrupt_png": "corrupt inputs",
        "test_mask_that_does_not_match_its_image": "corrupt inputs",
        "test_mask_png_that_disagrees_with_rle": "corrupt inputs",
        "test_rle_that_runs_out_of_the_tile": "corrupt inputs",
        "test_empty_train_csv": "corrupt inputs",
        "test_a_colour_tile_becomes_its_luminance_not_one_channel": "corrupt inputs",
    },
    "tests/test_resume_kill.py": {
        "test_killed_training_resumes_from_its_checkpoint": "kills",
    },
    "tests/test_workflow.py": {
        "test_a_bad_config_value_stops_with_one_line": "corrupt inputs",
        "test_a_missing_data_dir_stops_with_one_line": "corrupt inputs",
    },
    "tests/test_cli.py": {  # an output folder that cannot be made: one line, exit status 2
        "test_an_unwritable_output_is_one_line_naming_it": "disk full",
    },
    "tests/test_folds.py": {
        "test_a_fold_outside_n_folds_is_refused_before_anything_is_read": "corrupt inputs",
    },
    "tests/test_sections.py": {
        "test_bad_input_stops_with_one_line_and_writes_nothing": "corrupt inputs",
        "test_threshold_resolution_names_the_option_and_warns_on_fallback": "corrupt inputs",
        "test_a_blend_folder_uses_its_members_weights_and_threshold": "corrupt inputs",
        "test_a_nan_band_is_no_data_in_the_outputs": "corrupt inputs",
    },
    "tests/test_probs.py": {
        "test_nan_probabilities_fail_and_leave_the_old_file": "corrupt inputs",
    },
    "tests/test_data_reruns.py": {  # a data file edited in place or added: what -n plans
        "test_a_finished_run_plans_nothing": "invalidation",
        "test_an_edited_table_of_the_train_side_reruns_everything": "invalidation",
        "test_an_edited_train_image_or_mask_reruns_all_but_the_depth_folds": "invalidation",
        "test_an_edited_sample_submission_reruns_the_test_side_and_slot_training": "invalidation",
        "test_an_edited_test_image_reruns_the_test_side_not_stage1_training": "invalidation",
        "test_an_added_test_image_reruns_the_test_side_not_stage1_training": "invalidation",
        "test_an_edited_test_truth_reruns_the_summary_alone": "invalidation",
        "test_a_file_that_is_not_read_reruns_nothing": "invalidation",
        "test_remade_synthetic_data_reruns_its_readers_once": "invalidation",
        "test_an_edited_synthetic_file_reruns_the_jobs_that_read_it": "invalidation",
    },
    "tests/test_troubleshooting_docs.py": {  # Snakemake's own sharp edges, as the page shows
        "test_the_page_quotes_it": "documented commands",
        "test_a_misspelt_workflow_profile_is_ignored_silently": "documented commands",
        "test_a_missing_configfile_ends_in_a_traceback_naming_it": "documented commands",
        "test_config_takes_nested_keys_as_yaml_not_dotted": "documented commands",
        "test_list_options_swallow_targets_unless_a_double_dash_ends_them": "documented commands",
        "test_a_read_only_output_stops_a_forced_rerun_until_made_writable": "documented commands",
    },
    "tests/test_sections_docs.py": {  # docs/sections.md's examples, run as written
        "test_the_docs_commands_are_accepted": "documented commands",
        "test_the_docs_examples_use_the_tuned_threshold_after_a_submission": "documented commands",
    },
}
FULL = {  # need tests/test_workflow.py's complete DAG run (its module fixture) first
    "tests/test_workflow.py": {
        "test_a_changed_model_value_reruns_that_model_and_what_follows": "invalidation",
        "test_one_fold_target_rebuilds_that_fold_alone": "invalidation",
        "test_nothing_to_do_after_a_run": "invalidation",
        "test_speed_settings_rerun_nothing": "invalidation",
        "test_a_fold_outside_n_folds_is_planned_by_no_rule": "corrupt inputs",
    },
    "tests/test_profiles_e2e.py": {  # every GPU profile's whole DAG on tiny data (minutes)
        "test_each_gpu_profile_runs_its_whole_dag": "documented commands",
    },
}


def kind_of(file: str, name: str, table: dict) -> str | None:
    """The kind of failure a test case checks, or None for a test outside the suite."""
    base = name.split("[", 1)[0]
    if file == "tests/test_reliability.py":
        return next((k for p, k in PREFIXES.items() if base.startswith(p)), None)
    return table.get(file, {}).get(base)


def node_ids(table: dict) -> list[str]:
    ids = ["tests/test_reliability.py"]
    for file, tests in table.items():
        ids += [f"{file}::{name}" for name in tests]
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="add the full-DAG dry-run tests")
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    files = [*OTHERS, *(f for f in FULL if f not in OTHERS)] if args.full else list(OTHERS)
    table = {f: {**OTHERS.get(f, {}), **(FULL.get(f, {}) if args.full else {})} for f in files}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-m", "slow or not slow", *node_ids(table)]  # the slow cases too
        start = time.perf_counter()
        run = subprocess.run([*command, f"--junitxml={junit}"], cwd=REPO)
        wall = time.perf_counter() - start
        cases = ET.parse(junit).getroot().iter("testcase")
        counts = {k: {"cases": 0, "passed": 0, "failed": 0, "skipped": 0} for k in KINDS}
        failures, outside = [], []
        for case in cases:
            file = case.get("classname", "").replace(".", "/") + ".py"
            name = case.get("name", "")
            kind = kind_of(file, name, table)
            if kind is None:
                outside.append(f"{file}::{name}")
                continue
            count = counts[kind]
            count["cases"] += 1
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is not None:
                count["failed"] += 1
                message = (problem.get("message") or "").splitlines()[:1]
                failures.append({"test": f"{file}::{name}", "message": "".join(message)[:300]})
            elif case.find("skipped") is not None:
                count["skipped"] += 1
            else:
                count["passed"] += 1
    total = {k: sum(c[k] for c in counts.values()) for k in ["cases", "passed", "failed"]}
    write_result(
        "reliability",
        {
            "pytest": " ".join(["pytest", *command[3:]]),
            "pytest_exit_status": run.returncode,
            "wall_seconds": round(wall, 1),
            "kinds": counts,
            "total": {**total, "skipped": sum(c["skipped"] for c in counts.values())},
            "failures": failures,
            "not_counted": outside,
        },
        args.out,
        headline=f"{total['cases']} cases: {total['passed']} passed, {total['failed']} failed; "
        f"{wall:,.0f} s",
    )
    sys.exit(0 if run.returncode == 0 else 1)


if __name__ == "__main__":
    main()

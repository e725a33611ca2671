"""The command line, following ruff's conventions (check / --fix / --diff / rules / explain)."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Optional

import click

from nnxlint import __version__

# Sub-commands that need heavy imports are loaded only when invoked.
LAZY_COMMANDS = {
    "verify": "nnxlint.verify.command:verify",
    "transplant": "nnxlint.checkpoint:transplant",
    "report": "nnxlint.report:report",
}
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        available = [name for name, target in LAZY_COMMANDS.items() if _module_exists(target)]
        return sorted(set(super().list_commands(ctx)) | set(available))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and _module_exists(LAZY_COMMANDS[name]):
            module, _, attribute = LAZY_COMMANDS[name].partition(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


def _module_exists(target: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:
        return False


def fail(message: str) -> "click.exceptions.Exit":
    click.echo(f"nnxlint: error: {message}", err=True)
    return click.exceptions.Exit(EXIT_ERROR)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nnxlint")
def main() -> None:
    """Flag Flax Linen usage and NNX anti-patterns; fix them to NNX idioms."""


def _codes(option: tuple[str, ...]) -> list[str]:
    return [code for value in option for code in value.split(",") if code.strip()]


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(readable=False))  # unreadable: NNX000, the rest checked
@click.option("--fix", is_flag=True, help="Apply safe fixes.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply (with --fix) or show unsafe fixes.")
@click.option("--diff", is_flag=True, help="Print the diff --fix would apply; write nothing.")
@click.option("--select", multiple=True, help="Rule codes or prefixes to enable (comma-separated).")
@click.option("--extend-select", multiple=True, help="Codes to enable on top of the configured ones.")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable (comma-separated).")
@click.option("--output-format", type=click.Choice(["text", "json", "github", "sarif"]), default="text",
              show_default=True)
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when findings remain.")
@click.option("--statistics", is_flag=True, help="Print counts per rule instead of each finding.")
@click.option("-q", "--quiet", is_flag=True, help="Print findings only, no summary.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Use this pyproject.toml / nnxlint.toml instead of discovering one.")
@click.option("--force-exclude", is_flag=True, help="Apply exclude patterns to files named explicitly too.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU count).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache.")
@click.option("--timings", is_flag=True, help="Print the CPU time of each stage of the run on stderr.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Report and fail only on findings not recorded in this baseline file.")
@click.option("--write-baseline", "write_baseline_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Record all current findings in this baseline file and exit 0.")
@click.option("--update-baseline", is_flag=True,
              help="With --baseline: drop the entries of fixed findings from the file (never adds any).")
def check(paths, fix, unsafe_fixes, diff, select, extend_select, ignore, output_format, exit_zero,
          statistics, quiet, config_file, force_exclude, jobs, no_cache, timings, baseline_file,
          write_baseline_file, update_baseline):
    """Check PATHS (default: the current directory) for Linen usage and NNX pitfalls."""
    from nnxlint import output
    from nnxlint.config import ConfigError, load_settings
    from nnxlint.runner import check_files, find_files, job_for
    from nnxlint.timings import stage

    paths = list(paths) or ["."]
    try:
        settings = load_settings(config_file, Path(paths[0]))
        settings.apply_command_line(_codes(select), _codes(extend_select), _codes(ignore))
        fix_level = ("unsafe" if unsafe_fixes else "safe") if (fix or diff) else None
        # plain check leaves costly fixes (NNX002's conversion) to a run that applies or shows them
        job = job_for(settings, settings.enabled_codes(), fix_level, write=fix and not diff, diff=diff,
                      use_cache=not no_cache, describe_fixes=fix or diff or unsafe_fixes)
    except ConfigError as error:
        raise fail(str(error))
    for path in paths:
        if not os.path.lexists(path):  # a dangling link is reported as NNX000, not a usage error
            raise fail(f"{path}: no such file or directory")
    if update_baseline and not baseline_file:
        raise fail("--update-baseline needs --baseline FILE")
    if write_baseline_file and baseline_file:
        raise fail("use either --baseline or --write-baseline, not both")

    started = time.perf_counter()
    with stage("discovery"):
        found = find_files(settings, paths, force_exclude)
    outcomes = check_files(found, job, jobs)
    if timings:  # printed when the command is done, whichever way it exits
        click.get_current_context().call_on_close(_timings_printer(outcomes, started))

    findings = [finding for outcome in outcomes for finding in outcome.findings]
    errors = [message for outcome in outcomes for message in outcome.errors]
    warnings = [message for outcome in outcomes for message in outcome.warnings]
    fixed = sum(outcome.fixes_applied for outcome in outcomes)
    for message in warnings:
        click.echo(f"nnxlint: warning: {message}", err=True)
    for message in errors:
        click.echo(f"nnxlint: error: {message}", err=True)

    if diff:
        patch = "".join(outcome.diff for outcome in outcomes)
        click.echo(patch, nl=False)
        if not quiet:
            changed = sum(1 for outcome in outcomes if outcome.diff)
            click.echo(f"Would fix {fixed} finding(s) in {changed} file(s).", err=True)
        code = EXIT_ERROR if errors else (EXIT_FINDINGS if patch and not exit_zero else EXIT_OK)
        raise click.exceptions.Exit(code)

    if write_baseline_file or baseline_file:
        findings = _apply_baseline(findings, baseline_file, write_baseline_file, update_baseline, quiet)
        if write_baseline_file:
            raise click.exceptions.Exit(EXIT_ERROR if errors else EXIT_OK)

    if statistics:
        if findings:
            click.echo(output.statistics(findings))
    elif output_format == "json":
        click.echo(output.render_json(findings))
    elif output_format == "github":
        if findings:
            click.echo(output.render_github(findings))
    elif output_format == "sarif":
        click.echo(output.render_sarif(findings))
    else:
        for finding in findings:
            click.echo(output.text_line(finding))
    if output_format == "text" and not quiet:
        click.echo(_summary(findings, fixed, fix_level, statistics))
    code = EXIT_ERROR if errors else (EXIT_FINDINGS if findings and not exit_zero else EXIT_OK)
    raise click.exceptions.Exit(code)


def _timings_printer(outcomes, started: float):
    """Prints the stages' CPU time (``--timings``): what the workers sent back with each
    file and what the main process spent, the output being all it did after the check."""
    from nnxlint import timings

    checked = time.process_time()

    def print_timings() -> None:
        totals = timings.take()
        for outcome in outcomes:
            timings.add(totals, outcome.timings)
        totals["output"] = totals.get("output", 0.0) + time.process_time() - checked
        click.echo(timings.render(totals, len(outcomes), time.perf_counter() - started), err=True)
    return print_timings


def _apply_baseline(findings, baseline_file: Optional[Path], write_baseline_file: Optional[Path],
                    update_baseline: bool, quiet: bool):
    """The findings that the baseline does not cover (all of them once written)."""
    from nnxlint import baseline

    try:
        if write_baseline_file:
            records = [entry for _, entry in baseline.entries(findings, write_baseline_file)]
            baseline.write(write_baseline_file, records)
            click.echo(f"Wrote {len(records)} finding(s) to baseline {write_baseline_file}.", err=True)
            return findings
        comparison = baseline.compare(findings, baseline_file, baseline.read(baseline_file))
        if update_baseline and comparison.stale:
            baseline.write(baseline_file, comparison.kept)
    except baseline.BaselineError as error:
        raise fail(str(error))
    if not quiet:
        if comparison.known:
            click.echo(f"{comparison.known} finding(s) already in baseline {baseline_file}.", err=True)
        for entry in comparison.stale:
            click.echo(f"nnxlint: stale baseline entry (fixed): {entry['path']}: {entry['code']} "
                       f"{entry.get('source', '')!r}", err=True)
        if comparison.stale:
            action = "removed from the baseline" if update_baseline else "run with --update-baseline to drop them"
            click.echo(f"{len(comparison.stale)} stale baseline entr{'y' if len(comparison.stale) == 1 else 'ies'}: "
                       f"{action}.", err=True)
    return comparison.new


def _summary(findings, fixed: int, fix_level: Optional[str], statistics: bool) -> str:
    remaining = len(findings)
    if not remaining and not fixed:
        return "All checks passed!"
    lines = []
    if fix_level:
        lines.append(f"Found {remaining + fixed} error{'s' * (remaining + fixed != 1)} "
                     f"({fixed} fixed, {remaining} remaining).")
    else:
        lines.append(f"Found {remaining} error{'s' * (remaining != 1)}.")
    safe = sum(1 for f in findings if f.fix is not None and f.fix.applicability == "safe")
    unsafe = sum(1 for f in findings if f.fix is not None and f.fix.applicability == "unsafe")
    if safe and fix_level is None:
        lines.append(f"[*] {safe} fixable with the `--fix` option.")
    if unsafe and fix_level != "unsafe":
        lines.append(f"[-] {unsafe} more fixable with `--fix --unsafe-fixes`.")
    deferred = sum(1 for f in findings if f.fix_deferred)
    if deferred:
        lines.append(f"[-] {deferred} more may be fixable with `--fix --unsafe-fixes` "
                     "(`--unsafe-fixes` shows which, and why the others are not).")
    return "\n".join(lines)


@main.command(name="rules")
@click.option("--output-format", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
def list_rules(output_format):
    """List every rule: code, name, fix availability, summary."""
    import json

    from nnxlint.registry import all_rules

    rules = all_rules().values()
    if output_format == "json":
        click.echo(json.dumps([{"code": r.code, "name": r.name, "summary": r.summary, "fix": r.fixable}
                               for r in rules], indent=2))
        return
    if output_format == "markdown":  # the README's rule table
        click.echo("| Code | Name | Fix | Summary |\n|---|---|---|---|")
        for rule in rules:
            click.echo(f"| {rule.code} | `{rule.name}` | {rule.fixable or '—'} | {rule.summary} |")
        return
    for rule in rules:
        click.echo(f"{rule.code}  {rule.name:<32} {(rule.fixable or '-'):<7} {rule.summary}")


@main.command()
@click.argument("code")
def explain(code):
    """Print the documentation of the rule CODE."""
    from nnxlint.registry import all_rules

    rule = all_rules().get(code.strip().upper())
    if rule is None:
        raise fail(f"unknown rule code {code!r}; `nnxlint rules` lists the codes")
    fix = {"safe": "Fix is always available (safe).", "unsafe": "Fix is sometimes available (unsafe).",
           None: "No automatic fix."}[rule.fixable]
    click.echo(f"# {rule.code} {rule.name}\n\n{rule.summary}. {fix}\n\n{rule.documentation()}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

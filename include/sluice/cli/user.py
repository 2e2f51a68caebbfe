"""The commands of people who write and run pipelines: lint, plan, status, stop, trigger-retrain, schema tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.spec.errors import SpecError, SpecIssue

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import LoadedSpec
from sluice.cli.common import (
    _feature_probe,
    _lint_issues,
    _load_or_report,
    _model_version,
    _pipeline_name,
    _previous_version,
    _report_spec_error,
    _spec_files,
    _store_for,
)


def cmd_lint(args: argparse.Namespace) -> int:
    """Validate specs; print every problem; exit 1 on any error (warnings are printed, exit 0)."""
    from sluice.spec.loader import load_files

    files = _spec_files(args.paths)
    if not files:
        print("no *.pipeline.yaml files found in " + ", ".join(args.paths), file=sys.stderr)
        return 1
    report = load_files(files)
    shown = {f.resolve(): str(f) for f in reversed(files)}
    # Started first: the feature jobs run in a child process while the model classes import here.
    probe = None if args.no_import else _feature_probe(report.specs)
    ok = []
    warnings: list[SpecIssue] = []
    for loaded in report.specs:
        issues = _lint_issues(loaded, shown.get(loaded.path, str(loaded.path)), probe)
        errors = [i for i in issues if i.severity == "error"]
        warnings += [i for i in issues if i.severity == "warning"]
        if errors:
            report.errors[str(loaded.path)] = SpecError(errors)
        else:
            ok.append(loaded)
    for error in report.errors.values():
        _report_spec_error(error)
    for warning in warnings:
        print(warning, file=sys.stderr)
    for loaded in ok:
        print(f"ok  {loaded.path}  ({loaded.spec.pipeline})")
    return 1 if report.errors else 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print or write the JSON Schema."""
    from sluice.spec.schema import json_schema

    text = json.dumps(json_schema(), indent=2)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    """Print the spec reference (Markdown) generated from the models."""
    from sluice.spec.reference import markdown_reference

    print(markdown_reference())
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the DAGs and tasks a spec compiles to."""
    from sluice.plan import build_plan

    loaded = _load_or_report(args.spec, deep=True)
    if loaded is None:
        return 1
    plan = build_plan(loaded)
    if args.manifests:
        return _print_manifests(loaded, args.model_version, args.previous_version, args.rbac)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(plan), indent=2, default=str))
        return 0
    print(f"pipeline {plan.pipeline}  ({plan.spec_path})")
    for dag in plan.dags:
        print(f"\n  DAG {dag.dag_id}")
        print(f"    schedule: {dag.schedule.describe()}")
        print(f"    tags: {', '.join(dag.tags)}")
        for step in dag.steps:
            after = f"  after {', '.join(step.upstream)}" if step.upstream else ""
            extra = "".join(
                [
                    f"  pool={step.pool}" if step.pool else "",
                    f"  publishes {', '.join(step.outlets)}" if step.outlets else "",
                ]
            )
            print(f"    - {step.task_id:<15} retries={step.retries}{after}{extra}")
            print(f"        {step.doc}")
    from sluice.services.storage import open_store
    from sluice.steps.targets import target_for

    print("\n  deployment")
    # Only locations are printed: no connection is read, so `plan` works offline.
    for line in target_for(loaded, open_store(loaded)).describe():
        print(f"    {line}")
    return 0


def _print_manifests(loaded: LoadedSpec, version: str, previous: str, rbac_only: bool = False) -> int:
    """Print, as multi-document YAML, every object the target's deploy creates (targets declared with manifests)."""
    import yaml

    from sluice.services.storage import open_store
    from sluice.spec.models import registered_targets
    from sluice.steps.targets import target_for

    spec = loaded.spec
    if not spec.deployment.target_spec.manifests:
        with_manifests = " or ".join(f"'{name}'" for name, t in registered_targets().items() if t.manifests)
        issue = loaded.issue(
            "deployment.target",
            f"deployment.target is '{spec.deployment.target}': there are no manifests",
            f"--manifests shows what a {with_manifests} target applies",
        )
        print(issue, file=sys.stderr)
        return 1
    docs = target_for(loaded, open_store(loaded)).manifests(version, previous, rbac_only)
    out: list[str] = []
    comment = ""
    for note, manifest in docs:
        if note:
            comment += f"# {note}\n"
            continue
        out.append(comment + yaml.safe_dump(manifest, sort_keys=False))
        comment = ""
    print("---\n".join(out), end="")
    return 0


#: ``sluice status`` exit codes, so it can serve as a health check.
STATUS_OK, STATUS_SPEC_ERROR, STATUS_WRONG, STATUS_UNKNOWN = 0, 1, 3, 4


def cmd_status(args: argparse.Namespace) -> int:
    """Batches, champion (what it was trained on and what was held out) and deployment of a pipeline.

    Exit code: 0 when the deployment is what its record says (or nothing is deployed yet),
    1 when the spec or its storage cannot be read, 3 when what serves is wrong (NOT SERVING,
    WRONG VERSION, an unrecorded model server on the port, a Kubernetes rollout not
    complete), 4 when the target cannot be asked (the cluster does not answer).
    """
    from sluice.services.landing import printable
    from sluice.steps.lineage import champion_lines
    from sluice.steps.schema_pin import status_lines
    from sluice.steps.targets import target_for

    loaded, store = _store_for(args.spec)
    if loaded is None:
        return 1
    print(f"pipeline {loaded.spec.pipeline}")
    for batch_id in store.batches.ids():
        r = store.batches.get(batch_id)
        drift = f"drift share {r.drift_share:.2f}" if r.drift_share is not None else ""
        if r.drift_status == "not_enough_data":
            drift = "drift: not enough data"
        print(
            f"  batch {batch_id}  {printable(r.source_file):<28} {r.status:<9} {drift:<22} "
            f"{r.reason}"
            + (f" (reuses the name of {', '.join(r.replaces_name_of)})" if r.replaces_name_of else "")
            + (f" (superseded by {r.superseded_by}: its file changed after landing)" if r.superseded_by else "")
        )
    for line in status_lines(store, loaded.spec.source.columns, args.spec):
        print(f"  {line}")
    for line in champion_lines(loaded.project_dir, loaded.spec.pipeline):
        print(f"  {line}")
    _print_landing(loaded, store)
    _print_missing_pools(loaded)
    served = target_for(loaded, store).served()
    for line in served.lines:
        print(f"  {line}")
    if served.version and served.url:
        from sluice.services.serving_metrics import load_lines

        for line in load_lines(served.url.removesuffix("/invocations")):
            print(f"  {line}")
    if not served.reachable:
        return STATUS_UNKNOWN
    return STATUS_WRONG if served.healthy is False else STATUS_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the live setup each spec needs (connections, pools, MLflow, storage, Spark, workers, SMTP).

    Exit code: 0 when every check passes, 1 when a spec does not load, 2 when a check fails.
    Every spec is checked, whatever the others' results.
    """
    from sluice.airflow.doctor import diagnose

    worst = 0
    for path in _spec_files(args.paths):
        loaded = _load_or_report(str(path))
        if loaded is None:
            worst = max(worst, 1)
            continue
        print(f"{loaded.spec.pipeline} ({path})")
        for finding in diagnose(loaded):
            mark = "ok  " if finding.ok else "FAIL"
            print(f"  {mark} {finding.check:<24} {finding.detail}")
            if not finding.ok:
                print(f"       fix: {finding.fix}")
                worst = max(worst, 2)
    return worst


def _print_missing_pools(loaded: LoadedSpec) -> None:
    """Say so when a pool a task waits in is missing: such a task stays 'scheduled' for ever."""
    from sluice.airflow.doctor import check_pools

    try:
        found = check_pools(loaded)
    except Exception as exc:
        print(f"  pools: not checked ({type(exc).__name__}: the Airflow metadata database is not reachable from here)")
        return
    for finding in found:
        if not finding.ok:
            print(f"  WAITING FOR EVER: {finding.check} is {finding.detail}; fix: {finding.fix}")


def _print_landing(loaded: LoadedSpec, store: PipelineStore) -> None:
    """Inputs refused so far, and (local landing folder) files waiting that still look unfinished."""
    import time

    from sluice.services.landing import HIDDEN, held_back, local_entries, printable, select
    from sluice.steps.ingest import refused_inputs

    for r in refused_inputs(store):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(r.get("at", 0))))
        where = "left in the landing folder" if r.get("why") == HIDDEN else "moved to _rejected/"
        print(f"  refused {printable(str(r.get('name'))):<28} {when}  {r.get('why')} ({where})")
    source = loaded.spec.source
    if source.is_s3:
        return
    folder = loaded.resolve(source.uri)
    candidates, _ = select(local_entries(folder), source.pattern, source.detect.marker)
    held = held_back([str(folder / e.name) for e in candidates], source.format == "csv")
    for path, why in held.items():
        print(f"  waiting {printable(Path(path).name):<28} {why}")


def cmd_revalidate(args: argparse.Namespace) -> int:
    """Put a rejected batch back to ``landed``: the next ingest run validates it with the spec as it is now."""
    from sluice.steps.ingest import revalidate

    loaded, store = _store_for(args.spec)
    if loaded is None:
        return 1
    try:
        revalidate(store, args.batch)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"batch {args.batch} is landed again: the next {loaded.spec.pipeline}__ingest run validates it with the "
        "spec as it is now (a run already waiting for files takes it when its wait ends: a new file, or "
        "detect.timeout_seconds)"
    )
    return 0


def cmd_infer_schema(args: argparse.Namespace) -> int:
    """Print the declared schema (``columns:``) of a sample file, or write it into a spec."""
    from sluice.steps.schema import columns_yaml, infer_file, write_columns

    sample = Path(args.file)
    try:
        columns = infer_file(sample)
    except Exception as exc:  # a reader error: say which file and why, no traceback
        print(f"{sample}: cannot read it as {sample.suffix.lstrip('.') or 'parquet'}: {exc}", file=sys.stderr)
        return 1
    if not args.write:
        print(columns_yaml(columns), end="")
        return 0
    if not args.spec:
        print("--write needs --spec SPEC", file=sys.stderr)
        return 2
    import dataclasses

    from sluice.spec.loader import load_spec

    spec_path = Path(args.spec)
    try:
        updated = write_columns(spec_path.read_text(), columns)
    except (OSError, ValueError) as exc:
        print(f"{spec_path}: {exc}", file=sys.stderr)
        return 1
    tmp = spec_path.with_name(f".{spec_path.name}.infer-schema.tmp")
    tmp.write_text(updated)
    try:
        load_spec(tmp)
    except SpecError as exc:
        tmp.unlink()
        print(f"{spec_path}: not written, the result would not load:", file=sys.stderr)
        # Named after the spec, not the temporary file the user never sees.
        raise SpecError([dataclasses.replace(issue, file=str(spec_path)) for issue in exc.issues]) from None
    tmp.replace(spec_path)
    print(f"{spec_path}: source.columns set to the {len(columns)} columns of {sample}")
    return 0


def cmd_schema_pin(args: argparse.Namespace) -> int:
    """Show, re-pin (from a landed batch's file) or drop the schema pinned for a spec without ``source.columns``."""
    from sluice.steps.schema_pin import PinError, pin_from_batch, read_pin, reset_pin, status_lines

    loaded, store = _store_for(args.spec)
    if loaded is None:
        return 1
    declared = loaded.spec.source.columns
    try:
        if not (args.from_batch or args.reset):
            for line in status_lines(store, declared, args.spec):
                print(line)
            pin = read_pin(store)
            for name, kind in (pin.columns or []) if pin and not declared else ():
                print(f"  {name}: {kind}")
            return 0
        if args.from_batch:
            before, pin = pin_from_batch(store, args.from_batch, loaded.spec.source.format)
            _print_pin_change(before.types if before else None, pin.types, f"pinned from batch {args.from_batch}")
            status = store.batches.get(args.from_batch).status
            if status != "accepted":
                print(
                    f"batch {args.from_batch} is {status}: `sluice revalidate {args.spec} {args.from_batch}` "
                    "validates it again, against this pin, at the next ingest run"
                )
        else:
            before = reset_pin(store)
            _print_pin_change(before.types if before else None, None, "pin dropped")
            print("the next accepted batch pins its columns")
    except (PinError, ValueError) as exc:
        print(f"sluice schema-pin: {exc}", file=sys.stderr)
        return 1
    if declared:
        print(f"note: {args.spec} declares source.columns, which wins: the pin is not used while it does")
    return 0


def _print_pin_change(before: dict[str, str] | None, after: dict[str, str] | None, what: str) -> None:
    """Print what a new pin changes, one column a line."""
    from sluice.steps.schema_pin import changes

    lines = changes(before, after)
    print(f"{what}: " + (f"{len(lines)} change(s)" if lines else "no column changes"))
    for line in lines:
        print(f"  {line}")


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop serving a pipeline's champion, through its deploy target (a kubernetes target refuses)."""
    from sluice.steps.targets import StopRefused, target_for

    loaded, store = _store_for(args.spec)
    if loaded is None:
        return 1
    try:
        lines = target_for(loaded, store).stop()
    except StopRefused as exc:
        print(f"sluice stop: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def cmd_trigger_retrain(args: argparse.Namespace) -> int:
    """Post a drift event on a pipeline's drift asset through Airflow's REST API."""
    from sluice.plan.build import drift_asset
    from sluice.services.airflow_api import login, post_asset_event
    from sluice.settings import settings

    env = settings()
    token = args.token or env.airflow_api_token
    password = args.password or env.airflow_api_password
    if not token and not password:
        print("give --token (or AIRFLOW_API_TOKEN) or --password (or AIRFLOW_API_PASSWORD)", file=sys.stderr)
        return 2
    import requests
    from airflow_client.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    extra = {"reason": args.reason, "source": "sluice trigger-retrain"}
    try:
        token = token or login(args.api_url, args.username, str(password))
        event = post_asset_event(args.api_url, token, drift_asset(args.pipeline), extra)
    except (RuntimeError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (requests.RequestException, HTTPError) as exc:
        print(f"error: cannot reach the Airflow API at {args.api_url}: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"error: the Airflow API answered HTTP {exc.status}: {exc.reason} {exc.body or ''}", file=sys.stderr)
        return 1
    print(
        f"asset event {event['id']} on {event['uri']}: {args.pipeline}__train runs if it is unpaused and "
        "its retrain_on has 'drift'"
    )
    return 0


def _add_plan(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``plan`` subcommand and its options."""
    p = sub.add_parser("plan", help="show the DAGs and tasks a spec builds (no Airflow needed)")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--manifests", action="store_true", help="print every Kubernetes manifest the deploy would apply (YAML)"
    )
    p.add_argument("--rbac", action="store_true", help="with --manifests: only the RBAC objects (to kubectl apply)")
    p.add_argument(
        "--model-version", default="1", type=_model_version, help="model version shown in --manifests (default 1)"
    )
    p.add_argument(
        "--previous-version", default="", type=_previous_version, help="previous champion shown in --manifests"
    )
    p.set_defaults(func=cmd_plan)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The commands of people who write and run pipelines, in the order `sluice --help` lists them."""
    p = sub.add_parser("lint", help="validate specs (files or folders); exit 1 on any error")
    p.add_argument("paths", nargs="+")
    p.add_argument(
        "--no-import",
        action="store_true",
        help="skip the checks that import the model class or read Airflow connections (what the DAG processor checks)",
    )
    p.set_defaults(func=cmd_lint)
    p = sub.add_parser("schema", help="print the JSON Schema of a spec")
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("reference", help="print the spec reference as Markdown")
    p.set_defaults(func=cmd_reference)
    _add_plan(sub)
    p = sub.add_parser(
        "trigger-retrain", help="start <pipeline>__train from outside: post an asset event via the REST API"
    )
    p.add_argument("--api-url", required=True, help="Airflow API server, e.g. http://localhost:8080")
    p.add_argument("--pipeline", required=True, type=_pipeline_name)
    p.add_argument("--reason", default="external", help="why (kept in the event's extra)")
    p.add_argument("--username", default="admin")
    p.add_argument("--password", help="default: $AIRFLOW_API_PASSWORD")
    p.add_argument("--token", help="a JWT instead of user and password (default: $AIRFLOW_API_TOKEN)")
    p.set_defaults(func=cmd_trigger_retrain)
    p = sub.add_parser("status", help="batches and deployment of a pipeline")
    p.add_argument("spec")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("doctor", help="check the live setup specs need (connections, pools, MLflow, storage, ...)")
    p.add_argument("paths", nargs="+", help="spec files or folders of specs")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("revalidate", help="validate a rejected batch again at the next ingest run (after a spec fix)")
    p.add_argument("spec")
    p.add_argument("batch", help="the batch id (sluice status lists them)")
    p.set_defaults(func=cmd_revalidate)
    p = sub.add_parser("infer-schema", help="print the columns: of a parquet/CSV file, or write them into a spec")
    p.add_argument("file")
    p.add_argument("--spec", help="the spec to write source.columns into (with --write)")
    p.add_argument("--write", action="store_true", help="write into --spec instead of printing")
    p.set_defaults(func=cmd_infer_schema)
    p = sub.add_parser(
        "schema-pin",
        help="show, re-pin or drop the schema batches are held to when the spec declares no source.columns",
    )
    p.add_argument("spec")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--show", action="store_true", help="print the pin and its columns (the default)")
    which.add_argument(
        "--from-batch", metavar="ID", help="re-pin from this landed batch's file (sluice status lists the ids)"
    )
    which.add_argument("--reset", action="store_true", help="drop the pin: the next accepted batch pins again")
    p.set_defaults(func=cmd_schema_pin)
    p = sub.add_parser("stop", help="stop a pipeline's local model server (a kubernetes target refuses)")
    p.add_argument("spec")
    p.set_defaults(func=cmd_stop)

"""The loader reads any file safely: once, bounded, and every refusal names file, line and a fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.spec.corpus import DEMO_SPEC, PROJECT_DIR, base_text

from sluice.spec import document_cache, yaml_reader
from sluice.spec.errors import SpecError
from sluice.spec.loader import load_files, load_spec
from sluice.spec.yaml_reader import MAX_NODES


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


def test_the_file_is_parsed_once_from_the_composed_nodes(project_env, monkeypatch) -> None:
    calls: list[str] = []
    # The spec loader composes with libyaml (yaml_reader._SpecLoader), once per file.
    real_single = yaml_reader._SpecLoader.get_single_node

    def counting(self):  # type: ignore[no-untyped-def]
        calls.append("compose")
        return real_single(self)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the loader must not parse the text a second time")

    monkeypatch.setattr(yaml_reader._SpecLoader, "get_single_node", counting)
    monkeypatch.setattr(document_cache, "get", lambda *_: None)  # a DAG processor may have cached the demo
    for name in ("load", "safe_load", "compose", "safe_load_all", "load_all"):
        monkeypatch.setattr(yaml, name, refuse)

    loaded = load_spec(DEMO_SPEC)

    assert calls == ["compose"]
    assert loaded.spec.pipeline == "flights_delay"


def test_an_alias_bomb_is_refused_quickly_at_its_line(project_env, tmp_path) -> None:
    # Ten aliases of ten aliases, nine levels deep: 10**9 values when expanded (PyYAML plus
    # pydantic used to run out of memory after ~40 s).
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.pipeline.yaml"
    path.write_text(base_text() + "\n".join(rows) + "\n")
    first_row = len(base_text().splitlines()) + 1

    err = error_of(path)

    (issue,) = err.issues
    # Refused at the bound, after at most MAX_NODES steps: never expanded (no timing needed).
    assert f"more than {MAX_NODES:,} values" in issue.message
    assert issue.line is not None and first_row < issue.line <= first_row + 8
    assert issue.hint


def test_modest_reuse_of_anchors_still_loads(project_env, tmp_path) -> None:
    text = base_text().replace("tags: [demo]", "tags: &t [demo]\ndescription_tags: *t")
    text = text.replace("description_tags: *t\n", "")  # the anchor alone is fine
    text = text.replace(
        "    columns: [sched_dep_time, sched_arr_time, carrier, origin, dest, distance]",
        "    columns: &cols [sched_dep_time, sched_arr_time, carrier, origin, dest, distance]",
    )
    path = tmp_path / "anchors.pipeline.yaml"
    path.write_text(text)
    assert load_spec(path).spec.tags == ["demo"]


def test_a_quoted_date_stays_text_and_an_unquoted_one_is_refused(project_env, tmp_path) -> None:
    path = tmp_path / "dated.pipeline.yaml"
    path.write_text(base_text().replace("owner: data-eng", "owner: '2026-11-29'"))
    assert load_spec(path).spec.owner == "2026-11-29"

    path.write_text(base_text().replace("owner: data-eng", "owner: 2026-11-29"))
    with pytest.raises(SpecError, match="YAML reads it as a date"):
        load_spec(path)


def test_utf8_with_a_byte_order_mark_loads(project_env, tmp_path) -> None:
    path = tmp_path / "bom.pipeline.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + base_text().encode())
    assert load_spec(path).spec.pipeline == "corpus_case"


def test_a_crashing_file_never_stops_the_next_one(project_env, tmp_path) -> None:
    recursive = tmp_path / "a.pipeline.yaml"
    recursive.write_text(base_text().replace("tags: [demo]", "tags: &t [demo, *t]"))
    report = load_files([recursive, DEMO_SPEC])
    assert [s.spec.pipeline for s in report.specs] == ["flights_delay"]
    assert "recursive alias" in str(report.errors[str(recursive)])


@pytest.mark.process
def test_loading_a_spec_imports_neither_the_model_nor_airflow() -> None:
    code = (
        "import sys; from sluice.spec.loader import load_spec; "
        f"load_spec({str(DEMO_SPEC)!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'airflow', 'pyspark', 'mlflow'}))"
    )
    env = {"SLUICE_PROJECT_DIR": str(PROJECT_DIR), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def _depth(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return 1 + max((_depth(v) for _, v in node.value), default=0)
    if isinstance(node, yaml.SequenceNode):
        return 1 + max((_depth(v) for v in node.value), default=0)
    return 1


@pytest.mark.parametrize(
    "text",
    [
        "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40)) + "  " * 40 + "x\n",  # block mappings
        "a:\n- - - - - - - - - - x\n",  # compact block sequences
        "a:\n" + "".join("  " * i + "-\n" for i in range(1, 30)) + "  " * 30 + "x\n",  # sequences, one per line
        "a: " + "[k: " * 30 + "x" + "]" * 30 + "\n",  # implicit one-pair mappings in flow sequences
        "a: " + "{k: " * 30 + "x" + "}" * 30 + "\n",
        "a:\n"
        + "".join("  " * i + "k:\n" + "  " * i + "-\n" for i in range(20))
        + "  " * 20
        + "x\n",  # seq at key indent
    ],
)
def test_the_nesting_bound_is_never_below_the_real_depth(text: str) -> None:
    # libyaml composes only what _depth_bound rules out as too deep for its recursive composer.
    assert _depth(yaml.compose(text, Loader=yaml.SafeLoader)) <= yaml_reader._depth_bound(text)


@pytest.mark.parametrize("deep", [60, 2000])
def test_too_deep_nesting_is_refused_at_its_line_by_either_composer(project_env, tmp_path, deep: int) -> None:
    # 60 levels are composed by libyaml and refused by the walk; 2,000 by the bounded composer.
    path = tmp_path / "deep.pipeline.yaml"
    path.write_text(base_text() + "deep: " + "[" * deep + "]" * deep + "\n")
    (issue,) = error_of(path).issues
    assert "nested more than" in issue.message
    assert issue.line == len(base_text().splitlines()) + 1


def test_a_merge_key_alias_bomb_is_refused(project_env, tmp_path) -> None:
    rows = ["m0: &m0 {" + ", ".join(f"k{j}: [x, x, x, x, x, x, x, x, x, x]" for j in range(10)) + "}"]
    rows += [f"m{i}: &m{i} {{" + ", ".join(f"k{j}: {{<<: *m{i - 1}}}" for j in range(10)) + "}" for i in range(1, 7)]
    path = tmp_path / "merge-bomb.pipeline.yaml"
    path.write_text(base_text() + "\n".join(rows) + "\n")
    (issue,) = error_of(path).issues
    assert f"more than {MAX_NODES:,} values" in issue.message
    assert issue.line is not None and issue.line > len(base_text().splitlines())


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "x: &a {n: 1, f: 1.5, t: true, z: ~, s: '007', e: 1e3, h: 0x1f, o: 0o17, i: .inf}\ny: *a\n",
        "x: !!str 12\ny: !!int '12'\nz: [!!float 1, !!bool yes, !!null '']\n",
        "x: {a: 1, a: 2}\n",
        "x: &b {a: 1}\ny: {<<: *b, c: 2}\n",
        "x: 2026-11-29\ny: [1, [2, [3, {k: v}]]]\n",
    ],
)
def test_the_walk_builds_what_pyyamls_safe_loader_builds(tmp_path, extra: str) -> None:
    # The data comes from the walk unless it meets what only PyYAML's constructor builds exactly.
    text = base_text() + extra
    path = tmp_path / "same.pipeline.yaml"
    path.write_text(text)
    # PyYAML's own SafeLoader (pure-Python resolver and constructor) minus implicit dates.
    reference = type(
        "Reference", (yaml.SafeLoader,), {"yaml_implicit_resolvers": yaml_reader._SpecLoader.yaml_implicit_resolvers}
    )
    expected = yaml.load(text, Loader=reference)
    try:
        data = yaml_reader.read_document(path, "same.pipeline.yaml").data
    except SpecError as err:  # a repeated key is refused before any data is used
        assert "appears twice" in str(err)
        return
    assert data == expected


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9)),
            f"more than {MAX_NODES:,} values",
        ),
        ("loop: &t [demo, *t]\n", "recursive alias"),
    ],
)
def test_the_bounded_composer_path_refuses_alias_bombs_and_recursive_aliases_too(
    project_env, tmp_path, extra: str, refusal: str
) -> None:
    # A 600-character comment line makes the text one libyaml could nest too deep for its C
    # recursion, so the Python composer reads it; the walk still bounds what aliases expand to.
    text = base_text() + "# " + "x" * 600 + "\n" + extra
    assert yaml_reader._depth_bound(text) > yaml_reader.MAX_C_DEPTH
    path = tmp_path / "long.pipeline.yaml"
    path.write_text(text)
    (issue,) = error_of(path).issues
    assert refusal in issue.message
    assert issue.line is not None and issue.line > len(base_text().splitlines()) + 1

"""Read a spec file's YAML once: bounded, plain, with the file position of every key.

The bytes are checked (size, UTF-8 only, no control characters), composed into YAML nodes
(bounded nesting and alias expansion, no recursive alias), walked once for key positions,
duplicate keys and tags outside plain YAML, then constructed from those same nodes. Every
problem is a :class:`SpecError` naming file, line and a hint. Validating the data against
the models is :mod:`sluice.spec.loader`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
import yaml.cyaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

from sluice.spec.errors import SpecError, SpecIssue

#: Largest spec file read (a real spec is a few KiB).
MAX_SPEC_BYTES = 1024 * 1024
#: Most YAML nodes a spec may expand to, counting every use of an alias in full.
MAX_NODES = 20_000
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 50
#: Where a value sits in the document: keys and list indexes from the root.
Loc = tuple[str | int, ...]

_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge")
)
# What YAML 1.1 forbids in a stream (PyYAML's Reader.NON_PRINTABLE).
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Refused(Exception):
    """A document the loader will not build (too big, too deep, a recursive alias)."""

    def __init__(self, message: str, hint: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.mark = mark


#: libyaml's parser (its stub types events loosely: Any keeps the composer's own types).
_CParser: Any = yaml.cyaml.CParser  # type: ignore[attr-defined]


class _SpecLoader(Composer, _CParser, SafeConstructor, Resolver):
    """SafeLoader's composer, constructor and resolver over libyaml's parser, bounding what a document may expand to.

    Scanning and parsing in C is what makes reading a spec cheap at DAG-parse time (100 specs:
    1.6 s with PyYAML's pure-Python parser, 0.5 s this way); composing stays in Python so
    the bounds below apply while the nodes are built.

    Dates stay strings (no implicit timestamps), every node counts toward
    :data:`MAX_NODES` each time it is used (an alias counts its whole subtree, so an alias
    bomb is refused while composing, before anything is built), nesting is bounded by
    :data:`MAX_DEPTH`, and an alias to a node that is still open (a recursive alias) is
    refused. A value a constructor cannot convert (``!!float abc``) becomes a
    ``ConstructorError`` at that value's position.
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level table, filtered
        first: [(tag, rx) for tag, rx in resolvers if tag in _PLAIN_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        _CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._count = 0
        self._depth = 0
        self._open: set[str] = set()
        self._sizes: dict[str, int] = {}

    def _grow(self, by: int, mark: yaml.Mark) -> None:
        self._count += by
        if self._count > MAX_NODES:
            raise _Refused(
                f"the document expands to more than {MAX_NODES:,} values (aliases count in full)",
                "a spec is small: remove repeated aliases (*name) of large anchors",
                mark,
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise _Refused(
                    f"alias *{event.anchor} refers to a node that contains it (a recursive alias)",
                    f"a spec cannot contain itself: replace *{event.anchor} with the value it should have",
                    event.start_mark,
                )
            self._grow(self._sizes.get(str(event.anchor), 1), event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                f"values nested more than {MAX_DEPTH} levels deep", "a spec nests a few levels", event.start_mark
            )
        self._grow(1, event.start_mark)
        start = self._count
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        if anchor is not None:
            self._sizes[anchor] = self._count - start + 1
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            raise ConstructorError(None, None, f"cannot read {node.value!r} as {tag}: {exc}", node.start_mark) from None


def _positions(
    node: yaml.Node, loc: Loc, out: dict[Loc, yaml.Mark], dups: list[tuple[Loc, yaml.Mark]], bad_tags: list[yaml.Node]
) -> None:
    """Record where every key is, and collect repeated keys and tags outside plain YAML.

    The composer has bounded the expanded size and refused cycles, so this walk ends.
    """
    if node.tag not in _PLAIN_TAGS:
        bad_tags.append(node)
    out.setdefault(loc, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag not in _PLAIN_TAGS:
                bad_tags.append(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # the constructor reports an unhashable key at its position
            key = str(key_node.value)
            if key == "<<" and key_node.tag.endswith(":merge"):
                continue
            if key in seen:
                dups.append(((*loc, key), key_node.start_mark))
            seen.add(key)
            out[(*loc, key)] = key_node.start_mark
            _positions(value_node, (*loc, key), out, dups, bad_tags)
            out[(*loc, key)] = key_node.start_mark
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, (*loc, i), out, dups, bad_tags)


def pipeline_line(path: Path) -> int:
    """Line of the ``pipeline:`` key in a spec file (1 when it cannot be found)."""
    try:
        with path.open("rb") as f:
            head = f.read(MAX_SPEC_BYTES)
        for number, line in enumerate(head.splitlines(), start=1):
            if line.startswith(b"pipeline:"):
                return number
    except OSError:
        pass
    return 1


def issue_at(shown: str, mark: yaml.Mark | None, where: str, message: str, hint: str) -> SpecIssue:
    """A spec issue at a YAML position (line 1 when there is none)."""
    return SpecIssue(shown, mark.line + 1 if mark else 1, mark.column + 1 if mark else None, where, message, hint)


def _line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    before = data[:offset]
    newline: Any = b"\n" if isinstance(before, bytes) else "\n"
    line = before.count(newline) + 1
    return line, offset - (before.rfind(newline) + 1) + 1


def _read_bytes(path: Path, shown: str) -> bytes:
    """At most :data:`MAX_SPEC_BYTES` of the file, refusing a bigger one."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(
            [SpecIssue(shown, None, None, "", f"cannot read file: {exc.strerror or exc}", "check the path")]
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        message = f"file is larger than {MAX_SPEC_BYTES // 1024} KiB"
        raise SpecError(
            [SpecIssue(shown, 1, None, "", message, "a spec is a few KiB of YAML: is this the right file?")]
        )
    return raw


def _refuse_at(shown: str, data: bytes | str, offset: int, message: str, hint: str) -> SpecError:
    line, col = _line_col(data, offset)
    return SpecError([SpecIssue(shown, line, col, "", message, hint)])


def _read_text(path: Path, shown: str) -> str:
    """The file as text: at most :data:`MAX_SPEC_BYTES`, UTF-8, no control characters."""
    raw = _read_bytes(path, shown)
    for bom, name in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if raw.startswith(bom):
            raise SpecError(
                [SpecIssue(shown, 1, 1, "", f"file is {name} encoded", "save it as UTF-8 (e.g. iconv -t UTF-8)")]
            )
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise _refuse_at(
            shown,
            raw,
            nul,
            "file contains NUL bytes: it is binary or UTF-16 without a byte-order mark",
            "save it as UTF-8 text",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse_at(
            shown,
            raw,
            exc.start,
            f"byte 0x{raw[exc.start]:02x} is not UTF-8 (the file looks like Latin-1 or another 8-bit encoding)",
            "save the file as UTF-8 (e.g. iconv -f latin1 -t UTF-8)",
        ) from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        raise _refuse_at(
            shown,
            text,
            bad.start(),
            f"control character U+{ord(bad.group()):04X} is not allowed in YAML",
            "delete it (it is often pasted invisibly); write it as an escape in a double-quoted string",
        )
    return text


def _compose(text: str, shown: str) -> tuple[yaml.Node | None, _SpecLoader]:
    loader = _SpecLoader(text)
    try:
        return loader.get_single_node(), loader
    except _Refused as exc:
        raise SpecError([issue_at(shown, exc.mark, "", exc.message, exc.hint)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            [
                issue_at(
                    shown,
                    mark,
                    "",
                    f"YAML syntax error: {exc.problem or exc}",
                    "check indentation and quoting on this line or the one above",
                )
            ]
        ) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise SpecError(
            [issue_at(shown, None, "", f"YAML error: {exc}", "check the file is plain YAML text")]
        ) from None
    finally:
        loader.dispose()


def read_document(path: Path, shown: str) -> tuple[Any, dict[Loc, yaml.Mark]]:
    """The spec's data and the position of every key, parsed once from the file.

    Args:
        path: The spec file.
        shown: How issues name the file.

    Raises:
        SpecError: The file cannot be read, is not plain YAML, is not a mapping, repeats a
            key (YAML would silently keep the last) or uses a tag; each issue at its line.
    """
    text = _read_text(path, shown)
    root, loader = _compose(text, shown)
    if root is None or not isinstance(root, yaml.MappingNode):
        raise SpecError(
            [SpecIssue(shown, 1, None, "", "a spec must be a YAML mapping", "start with 'pipeline: <name>'")]
        )
    marks: dict[Loc, yaml.Mark] = {}
    dups: list[tuple[Loc, yaml.Mark]] = []
    bad_tags: list[yaml.Node] = []
    _positions(root, (), marks, dups, bad_tags)
    issues = [
        issue_at(shown, m, ".".join(map(str, loc)), "key appears twice", "keep one; YAML would silently use the last")
        for loc, m in dups
    ]
    issues += [
        issue_at(
            shown,
            node.start_mark,
            "",
            f"tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed in a spec",
            "remove the tag: a spec holds plain strings, numbers, booleans, lists and mappings",
        )
        for node in bad_tags
    ]
    if issues:
        raise SpecError(issues)
    try:
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            [issue_at(shown, mark, "", f"YAML error: {exc.problem or exc}", "write a plain value here")]
        ) from None
    return data, marks

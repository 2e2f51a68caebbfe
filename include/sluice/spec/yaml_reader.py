"""Read a spec file's YAML once: bounded, plain, with the file position of every key.

The bytes are checked (size, UTF-8 only, no control characters), composed into YAML nodes,
walked once (bounded nesting and alias expansion, no recursive alias; key positions,
duplicate keys and tags outside plain YAML), then constructed from those same nodes. Every
problem is a :class:`SpecError` naming file, line and a hint. Validating the data against
the models is :mod:`sluice.spec.loader`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

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
_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
#: A plain (unquoted) scalar that YAML 1.1 reads as a date, a timestamp or a base-60 number
#: (``2024-01-01``, ``2024-01-01 10:00``, ``12:30`` is 750): other YAML tools (editors, the JSON
#: Schema, ``yaml.safe_load``) do not read it as the text it looks like, so the loader refuses it
#: where text is expected (:func:`sluice.spec.loader`), with a hint to quote it.
DATE_LIKE = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]*)?)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?"
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"
)
_DATE_START = frozenset("0123456789+-")
# What YAML 1.1 forbids in a stream (PyYAML's Reader.NON_PRINTABLE).
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Refused(Exception):
    """A document the loader will not build (too big, too deep, a recursive alias)."""

    def __init__(self, message: str, hint: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.mark = mark


#: libyaml's parser and composer (its stub types events loosely: Any keeps the composer's own types).
_CParser: Any = yaml.cyaml.CParser  # type: ignore[attr-defined]
#: Deepest nesting a text may *possibly* reach (:func:`_depth_bound`) and still be composed by
#: libyaml: its composer recurses on the C stack, unbounded, so a text that could nest deeper
#: is composed by :class:`_BoundedLoader` instead, which refuses it at :data:`MAX_DEPTH`.
MAX_C_DEPTH = 1000


def _depth_bound(text: str) -> int:
    """An upper bound of how deep ``text``'s YAML can nest, counted without parsing it.

    A flow collection needs a ``[`` or ``{`` (and may hold an implicit one-pair mapping); a
    block collection needs more indentation or a compact ``- ``/``? `` on the line, and a
    block sequence may sit at its key's indentation: so at most two levels per opening
    bracket and two per column of the longest line.
    """
    longest = max(map(len, text.splitlines()), default=0)
    return 2 * (text.count("[") + text.count("{")) + 2 * longest + 2


class _Constructing(SafeConstructor, Resolver):
    """SafeLoader's constructor and resolver, over plain YAML only.

    Dates stay strings (no implicit timestamps). A value a constructor cannot convert
    (``!!float abc``) becomes a ``ConstructorError`` at that value's position.
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level table, filtered
        first: [(tag, rx) for tag, rx in resolvers if tag in _PLAIN_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # Resolver.resolve without path resolvers (none are registered): libyaml's composer
        # calls it for every node, so the shorter path is a tenth of reading a spec.
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return str(tag)
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            raise ConstructorError(None, None, f"cannot read {node.value!r} as {tag}: {exc}", node.start_mark) from None


class _SpecLoader(_CParser, _Constructing):
    """Parsed and composed by libyaml (C), constructed by PyYAML's SafeConstructor.

    Composing in C is what makes reading 100 specs at DAG-parse time cheap. libyaml keeps an
    alias as the very node it names, so an alias bomb is a small graph here; :class:`_Walk`
    bounds what it expands to before anything is built.
    """

    def __init__(self, stream: str) -> None:
        _CParser.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


class _BoundedLoader(Composer, _CParser, _Constructing):
    """libyaml's parser with PyYAML's composer in Python, bounding nesting while composing.

    For a text :func:`_depth_bound` cannot rule out as too deep for libyaml's recursive
    composer: nesting is refused past :data:`MAX_DEPTH` at the event's position, before the
    recursion goes deeper. Like libyaml's, this composer keeps an alias as the node it names;
    :class:`_Walk` bounds what aliases expand to.
    """

    def __init__(self, stream: str) -> None:
        _CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"values nested more than {MAX_DEPTH} levels deep", "a spec nests a few levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Walk:
    """One walk of a composed document that builds its data: bounded, with key positions.

    Every node counts toward :data:`MAX_NODES` each time it is reached (an alias counts its
    whole subtree, so an alias bomb is refused after at most that many steps), nesting is
    bounded by :data:`MAX_DEPTH`, and reaching a node from inside itself (a recursive alias)
    is refused. A refusal names the last place in the text the walk reached for the first
    time (where the alias is used, not where its anchor is). Along the way it records where
    every key is, repeated keys and tags outside plain YAML, and builds the data with
    SafeConstructor's own scalar constructors. What only PyYAML's constructor builds exactly
    (merge keys, a key that is a list or mapping, a value a constructor refuses) sets
    :attr:`unbuilt`: the caller then constructs the document with PyYAML instead.
    """

    def __init__(self, loader: _Constructing) -> None:
        self.marks: dict[Loc, yaml.Mark] = {}
        self.dates: list[tuple[Loc, yaml.Mark, str]] = []
        self.dups: list[tuple[Loc, yaml.Mark]] = []
        self.bad_tags: list[yaml.Node] = []
        self.unbuilt = False
        self._scalars = loader.yaml_constructors
        self._loader = loader
        self._count = 0
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._where: yaml.Mark | None = None

    def _reach(self, node: yaml.Node) -> None:
        if id(node) not in self._seen:
            self._seen.add(id(node))
            self._where = node.start_mark
            if node.tag not in _PLAIN_TAGS:
                self.bad_tags.append(node)

    def node(self, node: yaml.Node, loc: Loc, depth: int = 1, record: bool = True) -> Any:
        """Walk ``node`` found at ``loc``, ``depth`` levels down (``record``: note key positions); its data."""
        ident = id(node)
        if ident in self._open:
            raise _Refused(
                "an alias refers to a value that contains it (a recursive alias)",
                "a spec cannot contain itself: replace the alias (*name) with the value it should have",
                self._where,
            )
        self._reach(node)
        self._count += 1
        if self._count > MAX_NODES:
            raise _Refused(
                f"the document expands to more than {MAX_NODES:,} values (aliases count in full)",
                "a spec is small: remove repeated aliases (*name) of large anchors",
                self._where,
            )
        if depth > MAX_DEPTH:
            raise _Refused(f"values nested more than {MAX_DEPTH} levels deep", "a spec nests a few levels", self._where)
        if record:
            self.marks.setdefault(loc, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            # libyaml marks a plain scalar with style "", PyYAML with None.
            if record and not node.style and node.value[:1] in _DATE_START and DATE_LIKE.fullmatch(node.value):
                self.dates.append((loc, node.start_mark, node.value))
            return self._scalar(node)
        self._open.add(ident)
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc, depth, record)
            self.unbuilt |= node.tag != _SEQ
            return [self.node(item, (*loc, i), depth + 1, record) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(ident)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _STR:
            return node.value
        construct = self._scalars.get(node.tag)
        if construct is not None:
            try:
                return construct(self._loader, node)
            except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
                pass
        self.unbuilt = True
        return None

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int, record: bool) -> dict[Any, Any]:
        self.unbuilt |= node.tag != _MAP
        data: dict[Any, Any] = {}
        keys: set[str] = set()
        for key_node, value_node in node.value:
            self._reach(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.unbuilt = True  # PyYAML's constructor reports the unhashable key at its position
                continue
            key = str(key_node.value)
            if key == "<<" and key_node.tag.endswith(":merge"):
                # Merged keys count toward the bounds but are not where this mapping's keys are.
                self.unbuilt = True
                self.node(value_node, loc, depth, record=False)
                continue
            if key in keys and record:
                self.dups.append(((*loc, key), key_node.start_mark))
            keys.add(key)
            if record:
                self.marks[(*loc, key)] = key_node.start_mark
            data[self._scalar(key_node)] = self.node(value_node, (*loc, key), depth + 1, record)
            if record:
                self.marks[(*loc, key)] = key_node.start_mark
        return data


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


def read_bytes(path: Path, shown: str) -> bytes:
    """The spec file's bytes: at most :data:`MAX_SPEC_BYTES`, refusing a bigger file.

    Raises:
        SpecError: The file cannot be read or is too big.
    """
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


def _read_text(raw: bytes, shown: str) -> str:
    """The file's bytes as text: UTF-8, no control characters."""
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


def _compose(text: str, shown: str) -> tuple[yaml.Node | None, _Constructing]:
    loader = _SpecLoader(text) if _depth_bound(text) <= MAX_C_DEPTH else _BoundedLoader(text)
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


class Reading(NamedTuple):
    """What :func:`read_document` made of a spec file.

    Attributes:
        data: The document as plain data.
        marks: Position of every key (and list item) by location.
        dates: Plain scalars YAML 1.1 reads as a date, time or base-60 number
            (:data:`DATE_LIKE`): location, position and the text as written.
    """

    data: Any
    marks: dict[Loc, yaml.Mark]
    dates: list[tuple[Loc, yaml.Mark, str]]


def read_document(path: Path, shown: str, raw: bytes | None = None) -> Reading:
    """The spec's data and the position of every key, parsed once from the file.

    Args:
        path: The spec file.
        shown: How issues name the file.
        raw: The file's bytes, when the caller has read them (:func:`read_bytes`).

    Raises:
        SpecError: The file cannot be read, is not plain YAML, is not a mapping, repeats a
            key (YAML would silently keep the last) or uses a tag; each issue at its line.
    """
    text = _read_text(read_bytes(path, shown) if raw is None else raw, shown)
    root, loader = _compose(text, shown)
    if root is None or not isinstance(root, yaml.MappingNode):
        raise SpecError(
            [SpecIssue(shown, 1, None, "", "a spec must be a YAML mapping", "start with 'pipeline: <name>'")]
        )
    walk = _Walk(loader)
    try:
        data = walk.node(root, ())
    except _Refused as exc:
        raise SpecError([issue_at(shown, exc.mark, "", exc.message, exc.hint)]) from None
    issues = [
        issue_at(shown, m, ".".join(map(str, loc)), "key appears twice", "keep one; YAML would silently use the last")
        for loc, m in walk.dups
    ]
    issues += [
        issue_at(
            shown,
            node.start_mark,
            "",
            f"tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed in a spec",
            "remove the tag: a spec holds plain strings, numbers, booleans, lists and mappings",
        )
        for node in walk.bad_tags
    ]
    if issues:
        raise SpecError(issues)
    if not walk.unbuilt:
        return Reading(data, walk.marks, walk.dates)
    try:
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            [issue_at(shown, mark, "", f"YAML error: {exc.problem or exc}", "write a plain value here")]
        ) from None
    return Reading(data, walk.marks, walk.dates)

"""The sandbox's result codec: a test's answer as plain tagged JSON of builtin types, and back.

The child encodes each result with `make_encoder()` (exact `type(x) is int` checks, every builtin bound
before model code runs); the grader decodes it with `decode`, which trusts nothing it is sent (bounded,
linear, malformed input is a ValueError), and encodes expected values with the same encoder so that equal
text means an exact pass. `Linked` and `Tree` are ListNode chains and TreeNodes by value. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass


def make_encoder(max_items: int = 1_000_000, max_depth: int = 100, max_chars: int = 1 << 20, loose: bool = False):
    """value -> tagged JSON text, accepting exact builtin types only (subclasses are rejected; with `loose`,
    a subclass of a builtin is encoded as its builtin base, for the naive eq_override grader only).

    ["n"] None, ["b",0|1], ["i",hex], ["f",float.hex], ["s",utf-8 hex], ["l"|"t"|"S"|"F",[...]] list/tuple/
    set/frozenset, ["d",[[k,v],...]], ["L",[vals]] a ListNode chain, ["R",[vals|["n"]]] a TreeNode in level order.
    """
    _type, _int, _float, _str, _bool, _list, _tuple, _set, _frozenset, _dict = (
        type, int, float, str, bool, list, tuple, set, frozenset, dict)  # fmt: skip
    _hex, _float_hex, _str_encode, _bytes_hex, _len, _str_join = hex, float.hex, str.encode, bytes.hex, len, str.join
    _dict_items, _getattr, _TypeError, _ValueError, _issubclass = dict.items, getattr, TypeError, ValueError, issubclass
    TEXT = 1
    bases = (_int, _float, _str, _list, _tuple, _dict, _set, _frozenset)  # (bool cannot be subclassed)

    def downcast(v):
        t = _type(v)  # type(), not isinstance: a spoofed __class__ does not count
        if v is None or t in bases or t is _bool or t.__name__ in ("ListNode", "TreeNode"):
            return v
        for base in bases:
            if _issubclass(t, base):
                v = base(v)
                if _type(v) is base:
                    return v
        raise _TypeError("result of non-builtin type")

    def encode(value) -> str:
        out, stack, n, size = [], [(0, value, 0)], 0, 0
        while stack:
            kind, v, depth = stack.pop()
            if kind == TEXT:
                out.append(v)
                size += _len(v)
                continue
            n += 1
            if n > max_items or depth > max_depth or size > max_chars:
                raise _ValueError("result too large or too deeply nested")
            if loose:
                v = downcast(v)
            t = _type(v)
            if v is None:
                piece = '["n"]'
            elif t is _bool:
                piece = '["b",1]' if v else '["b",0]'
            elif t is _int:
                piece = '["i","' + _hex(v) + '"]'
            elif t is _float:
                piece = '["f","' + _float_hex(v) + '"]'
            elif t is _str:
                piece = '["s","' + _bytes_hex(_str_encode(v, "utf-8", "surrogatepass")) + '"]'
            elif t is _list or t is _tuple or t is _set or t is _frozenset:
                items = _list(v)
                stack.append((TEXT, "]]", 0))
                for j in _range_rev(_len(items)):
                    stack.append((0, items[j], depth + 1))
                    if j:
                        stack.append((TEXT, ",", 0))
                piece = '["' + ("l" if t is _list else "t" if t is _tuple else "S" if t is _set else "F") + '",['
            elif t is _dict:
                pairs = _list(_dict_items(v))
                stack.append((TEXT, "]]", 0))
                for j in _range_rev(_len(pairs)):
                    stack += [(TEXT, "]", 0), (0, pairs[j][1], depth + 2), (TEXT, ",", 0), (0, pairs[j][0], depth + 2), (TEXT, "[", 0)]
                    if j:
                        stack.append((TEXT, ",", 0))
                piece = '["d",['
            elif t.__name__ in ("ListNode", "TreeNode"):
                vals = _linked_values(v, t.__name__ == "TreeNode", max_items, _getattr, _ValueError)
                stack.append((TEXT, "]]", 0))
                for j in _range_rev(_len(vals)):
                    stack.append((0, vals[j], depth + 1))
                    if j:
                        stack.append((TEXT, ",", 0))
                piece = '["' + ("R" if t.__name__ == "TreeNode" else "L") + '",['
            else:
                raise _TypeError("result of non-builtin type")
            out.append(piece)
            size += _len(piece)
            if size > max_chars:  # after the piece: one huge int or str must not slip past the cap
                raise _ValueError("result too large or too deeply nested")
        return _str_join("", out)

    return encode


def _range_rev(n: int):
    return range(n - 1, -1, -1)


def _linked_values(node, tree: bool, cap: int, _getattr, _ValueError) -> list:
    """A ListNode chain's values, or a TreeNode's LeetCode level order (None gaps, trailing Nones dropped)."""
    vals = []
    if not tree:
        while node is not None:
            if len(vals) >= cap:
                raise _ValueError("linked list too long (a cycle?)")
            vals.append(_getattr(node, "val"))
            node = _getattr(node, "next")
        return vals
    queue, i = [node], 0
    while i < len(queue):
        if len(queue) > cap:
            raise _ValueError("tree too large")
        cur = queue[i]
        i += 1
        if cur is None:
            vals.append(None)
            continue
        vals.append(_getattr(cur, "val"))
        queue += [_getattr(cur, "left"), _getattr(cur, "right")]
    while vals and vals[-1] is None:
        vals.pop()
    return vals


@dataclass(frozen=True)
class Linked:  # a ListNode chain, by value
    vals: tuple


@dataclass(frozen=True)
class Tree:  # a TreeNode, by its LeetCode level order (None gaps, no trailing None)
    vals: tuple


MAX_SAME_HASH = 64  # elements of one decoded set (keys of one dict) that may share a hash value


def _hashable(items: list) -> list:
    """`items`, checked before a set or dict is built of them: a pile of distinct values with one hash (crafted
    ints do it) makes building it quadratic (107 s for one forged record, issue 18). Linear: distinct
    hash values, which index a dict without piling up."""
    counts: dict = {}
    for e in items:
        h = hash(e)  # (TypeError for an unhashable element: malformed)
        counts[h] = c = counts.get(h, 0) + 1
        if c > MAX_SAME_HASH:
            raise ValueError("result whose elements share hashes (built to be slow)")
    return items


def decode(node: object) -> object:
    """The child's tagged JSON -> a plain value (ValueError on anything malformed: the child is not trusted).
    Linear in the size of `node`: sets and dicts are built only of elements that pass `_hashable`."""
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise ValueError("malformed result")
    tag, rest = node[0], node[1:]
    if tag == "n" and not rest:
        return None
    if len(rest) != 1:
        raise ValueError("malformed result")
    (x,) = rest
    if tag == "b" and x in (0, 1) and type(x) is int:
        return bool(x)
    if tag == "i" and isinstance(x, str):
        return int(x, 16)
    if tag == "f" and isinstance(x, str):
        return float.fromhex(x)
    if tag == "s" and isinstance(x, str):
        return bytes.fromhex(x).decode("utf-8", "surrogatepass")
    if not isinstance(x, list):
        raise ValueError("malformed result")
    if tag == "l":
        return [decode(e) for e in x]
    if tag == "t":
        return tuple(decode(e) for e in x)
    if tag == "S":
        return set(_hashable([decode(e) for e in x]))
    if tag == "F":
        return frozenset(_hashable([decode(e) for e in x]))
    if tag == "d":
        pairs = [(decode(k), decode(v)) for k, v in x]
        _hashable([k for k, _ in pairs])
        return dict(pairs)
    if tag == "L":
        return Linked(tuple(decode(e) for e in x)) if x else None
    if tag == "R":
        return Tree(tuple(decode(e) for e in x)) if x else None
    raise ValueError("malformed result")

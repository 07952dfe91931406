"""
Copies disguised the way students disguise them, for the similarity checker's evidence (tests/test_similarity.py).

Each function takes a layers.py text and returns a disguised copy that still
computes the same thing: names changed, functions reordered, comments and
blank lines changed, a function split in two, dead code added, and all of
them at once. They work on the syntax tree (ast), so every disguise is valid
Python; `tests/test_similarity.py` checks that each still runs.
"""
import ast
import builtins
import random

GRADED = ("batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward",
          "layernorm_backward", "spatial_batchnorm_forward", "spatial_batchnorm_backward",
          "spatial_groupnorm_forward", "spatial_groupnorm_backward")
WORDS = ("val", "tmp", "arr", "res", "acc", "buf", "part", "term", "item", "comp", "piece", "elem")


def _unparse(tree):
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


class _Renamer(ast.NodeTransformer):
    """Every local name and argument of the functions renamed (not the graded functions' names, not np)."""

    def __init__(self, rng, keep):
        self.rng, self.keep, self.names = rng, keep, {}

    def _new(self, name):
        if name in self.keep or name in dir(builtins):
            return name
        if name not in self.names:
            self.names[name] = f"{self.rng.choice(WORDS)}_{len(self.names)}"
        return self.names[name]

    def visit_Name(self, node):
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._new(node.arg)
        return node

    def visit_FunctionDef(self, node):
        if node.name not in self.keep:
            node.name = self._new(node.name)
        self.generic_visit(node)
        return node


def rename(text, seed=0):
    tree = ast.parse(text)
    keep = set(GRADED) | {"np", "numpy", "math"}
    keep |= {a.asname or a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    for node in ast.walk(tree):  # keyword arguments of calls keep their names (axis=, keepdims=)
        if isinstance(node, ast.keyword) and node.arg:
            keep.add(node.arg)
    return _unparse(_Renamer(random.Random(seed), keep).visit(tree))


def reorder(text, seed=0):
    """The top-level functions in another order (imports and other statements first)."""
    tree = ast.parse(text)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    random.Random(seed).shuffle(functions)
    tree.body = [n for n in tree.body if not isinstance(n, ast.FunctionDef)] + functions
    return _unparse(tree)


def recomment(text, seed=0):
    """Comments and docstrings dropped, new comments and blank lines put in, lines re-spaced (ast.unparse)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    rng = random.Random(seed)
    lines = []
    for line in _unparse(tree).splitlines():
        indent = line[:len(line) - len(line.lstrip())]
        if line.strip() and rng.random() < 0.3:
            lines.append(f"{indent}# {rng.choice(('compute this', 'next step', 'see lecture notes', 'TODO check'))}")
        lines.append(line)
        if rng.random() < 0.2:
            lines.append("")
    return "\n".join(lines) + "\n"


def _assigned(statements):
    return {n.id for s in statements for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _loaded(statements):
    return {n.id for s in statements for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def split(text, seed=0):
    """
    Each graded function with enough plain statements split in two: its first
    statements moved into a helper that returns what the rest uses.
    """
    tree = ast.parse(text)
    body = []
    for node in tree.body:
        body.append(node)
        if not (isinstance(node, ast.FunctionDef) and node.name in GRADED):
            continue
        statements = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        cut = len(statements) // 2
        head, tail = statements[:cut], statements[cut:]
        if cut < 2 or any(isinstance(s, (ast.Return, ast.Global, ast.Nonlocal)) for s in ast.walk(ast.Module(head, []))):
            continue
        needed = sorted(_assigned(head) & (_loaded(tail) | _assigned(tail)))
        if not needed:
            continue
        helper = f"_{node.name}_setup"
        returned = ast.Tuple([ast.Name(n, ast.Load()) for n in needed], ast.Load())
        body.insert(len(body) - 1, ast.FunctionDef(name=helper, args=node.args, body=head + [ast.Return(returned)],
                                                   decorator_list=[], returns=None, type_params=[]))
        call = ast.Call(ast.Name(helper, ast.Load()),
                        [ast.Name(a.arg, ast.Load()) for a in node.args.args], [])
        target = ast.Tuple([ast.Name(n, ast.Store()) for n in needed], ast.Store())
        node.body = [ast.Assign([target], call)] + tail
    tree.body = body
    return _unparse(tree)


def pad(text, seed=0):
    """Dead code added: unused temporaries after some statements, an unused helper, a branch never taken."""
    tree = ast.parse(text)
    rng = random.Random(seed)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            new = []
            for statement in node.body:
                new.append(statement)
                if isinstance(statement, ast.Assign) and rng.random() < 0.4:
                    new.append(ast.parse(f"_unused_{rng.randrange(1000)} = {rng.randrange(100)} * 0.5").body[0])
            if isinstance(new[-1], ast.Return):
                new.insert(len(new) - 1, ast.parse("if False:\n    print('debug', None)").body[0])
            node.body = new
    tree.body.append(ast.parse("def _debug_helper(a, b=None):\n    c = [a, b]\n    return len(c) * 2\n").body[0])
    return _unparse(tree)


def everything(text, seed=0):
    return pad(split(recomment(reorder(rename(text, seed), seed), seed), seed), seed)


DISGUISES = {"renamed": rename, "reordered": reorder, "comments and spacing": recomment, "split": split,
             "dead code": pad, "all at once": everything}
